package dev.weir.minidfs;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.concurrent.CountDownLatch;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.DFSConfigKeys;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;

/**
 * A real HDFS (one NameNode, N DataNodes in one JVM) for Weir's integration
 * tests, started by deploy/dev/hdfs.sh.
 *
 * <p>Environment:
 * <ul>
 *   <li>WEIR_HDFS_BASEDIR (required): where NameNode and DataNode storage lives.
 *       Kept across restarts; the cluster is formatted only on first start.</li>
 *   <li>WEIR_HDFS_PORT (9000): NameNode RPC port on 127.0.0.1.</li>
 *   <li>WEIR_HDFS_HTTP_PORT (9870): NameNode HTTP/WebHDFS port on 127.0.0.1.</li>
 *   <li>WEIR_HDFS_DATANODES (2): number of DataNodes (replication min(3, N)).</li>
 * </ul>
 *
 * <p>Prints "Ready!" once the cluster is active and stays up until the JVM is
 * told to stop (SIGTERM/SIGINT), then shuts the cluster down cleanly.
 */
public final class WeirMiniDfs {
  private static final String HOST = "127.0.0.1";

  private WeirMiniDfs() {}

  private static String env(String name, String dflt) {
    String v = System.getenv(name);
    return (v == null || v.isEmpty()) ? dflt : v;
  }

  private static int intEnv(String name, int dflt, int min) {
    String v = env(name, Integer.toString(dflt));
    int n;
    try {
      n = Integer.parseInt(v.trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(name + " must be an integer, got '" + v + "'");
    }
    if (n < min) {
      throw new IllegalArgumentException(name + " must be >= " + min + ", got " + n);
    }
    return n;
  }

  public static void main(String[] args) throws Exception {
    String base = env("WEIR_HDFS_BASEDIR", null);
    if (base == null) {
      throw new IllegalArgumentException("WEIR_HDFS_BASEDIR is not set");
    }
    int port = intEnv("WEIR_HDFS_PORT", 9000, 1);
    int httpPort = intEnv("WEIR_HDFS_HTTP_PORT", 9870, 0);
    int datanodes = intEnv("WEIR_HDFS_DATANODES", 2, 1);

    File baseDir = new File(base).getAbsoluteFile();
    File formatted = new File(baseDir, ".weir-formatted");
    boolean format = !formatted.exists();

    Configuration conf = new HdfsConfiguration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, baseDir.getPath());
    conf.set("hadoop.tmp.dir", new File(baseDir, "tmp").getPath());
    // Loopback only. MiniDFSCluster already binds the NameNode RPC/HTTP and the
    // DataNodes to 127.0.0.1; these make it explicit for everything else.
    conf.set(DFSConfigKeys.DFS_NAMENODE_RPC_ADDRESS_KEY, HOST + ":" + port);
    conf.set(DFSConfigKeys.DFS_NAMENODE_HTTP_ADDRESS_KEY, HOST + ":" + httpPort);
    conf.set(DFSConfigKeys.DFS_NAMENODE_HTTPS_ADDRESS_KEY, HOST + ":0");
    conf.set(DFSConfigKeys.DFS_NAMENODE_SECONDARY_HTTP_ADDRESS_KEY, HOST + ":0");
    conf.set(DFSConfigKeys.DFS_NAMENODE_SECONDARY_HTTPS_ADDRESS_KEY, HOST + ":0");
    conf.set(DFSConfigKeys.DFS_NAMENODE_BACKUP_ADDRESS_KEY, HOST + ":0");
    conf.set(DFSConfigKeys.DFS_NAMENODE_BACKUP_HTTP_ADDRESS_KEY, HOST + ":0");
    conf.set(DFSConfigKeys.DFS_DATANODE_ADDRESS_KEY, HOST + ":0");
    conf.set(DFSConfigKeys.DFS_DATANODE_HTTP_ADDRESS_KEY, HOST + ":0");
    conf.set(DFSConfigKeys.DFS_DATANODE_HTTPS_ADDRESS_KEY, HOST + ":0");
    conf.set(DFSConfigKeys.DFS_DATANODE_IPC_ADDRESS_KEY, HOST + ":0");
    conf.set("fs.defaultFS", "hdfs://" + HOST + ":" + port);
    // Permission checks stay on; the user running this JVM owns the NameNode
    // and is therefore the HDFS superuser.
    conf.setBoolean(DFSConfigKeys.DFS_PERMISSIONS_ENABLED_KEY, true);
    conf.setInt(DFSConfigKeys.DFS_REPLICATION_KEY, Math.min(3, datanodes));
    conf.setBoolean("dfs.webhdfs.enabled", true);
    // Let a file close while its last block is committed by the write
    // pipeline but not yet reported by a datanode (Hadoop 2.8+). Without it
    // the client's first complete() usually loses the race with the
    // datanode's block report and hdfs-native sleeps 500 ms before retrying,
    // so every small write takes ~0.5 s. See docs/hdfs.md.
    conf.setInt("dfs.namenode.file.close.num-committed-allowed", 1);

    // Stop on SIGTERM/SIGINT from the main thread, before the JVM starts its
    // own shutdown: DataNodes remove Hadoop shutdown hooks while stopping,
    // which throws once the JVM is already shutting down.
    CountDownLatch stopRequested = new CountDownLatch(1);
    for (String sig : new String[] {"TERM", "INT"}) {
      sun.misc.Signal.handle(new sun.misc.Signal(sig), s -> {
        System.out.println("Got SIG" + s.getName() + ", shutting down MiniDFSCluster");
        stopRequested.countDown();
      });
    }

    MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf, baseDir)
        .nameNodePort(port)
        .nameNodeHttpPort(httpPort)
        .numDataNodes(datanodes)
        .format(format)
        .manageNameDfsDirs(true)
        .manageDataDfsDirs(true)
        .waitSafeMode(true)
        .build();

    cluster.waitActive();
    if (format) {
      Files.write(formatted.toPath(), "formatted\n".getBytes(StandardCharsets.UTF_8));
    }
    System.out.println("HDFS URL: hdfs://" + HOST + ":" + cluster.getNameNodePort()
        + " (datanodes: " + datanodes + ", http: " + HOST + ":" + cluster.getNameNode().getHttpAddress().getPort()
        + ", base dir: " + baseDir + ", formatted now: " + format + ")");
    System.out.println("Ready!");
    System.out.flush();
    stopRequested.await();
    cluster.shutdown();
    System.out.println("Stopped.");
    System.out.flush();
    System.exit(0);
  }
}
