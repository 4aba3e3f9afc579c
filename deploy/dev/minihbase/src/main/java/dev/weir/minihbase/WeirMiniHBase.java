package dev.weir.minihbase;

import java.io.File;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hbase.HBaseConfiguration;
import org.apache.hadoop.hbase.HBaseTestingUtility;
import org.apache.hadoop.hbase.StartMiniClusterOption;
import org.apache.hadoop.hbase.thrift.ThriftServer;

/**
 * A real HBase for Weir's integration tests, started by deploy/dev/hbase.sh:
 * a MiniHBaseCluster (one master, one region server, its own
 * MiniZooKeeperCluster, data on the local file system) and HBase's Thrift
 * gateway (thrift1: the {@code Hbase} service, binary protocol, unframed
 * transport) in one JVM, all on 127.0.0.1.
 *
 * <p>Environment:
 * <ul>
 *   <li>WEIR_HBASE_BASEDIR (required): where ZooKeeper and HBase keep their
 *       files. Every start is a fresh, empty cluster; hbase.sh empties the
 *       directory first, and a clean stop deletes what the cluster wrote.</li>
 *   <li>WEIR_HBASE_THRIFT_PORT (19090): the Thrift server's port.</li>
 *   <li>WEIR_HBASE_ZK_PORT (12181): the ZooKeeper client port.</li>
 * </ul>
 *
 * <p>Prints "Ready!" once a Thrift call through the gateway has succeeded
 * (so the gateway, the master, the region server and hbase:meta all work),
 * and stays up until SIGTERM/SIGINT, then stops the gateway and the
 * cluster and exits.
 */
public final class WeirMiniHBase {
  static final String HOST = "127.0.0.1";
  private static final long READY_TIMEOUT_MS = 120_000;

  private WeirMiniHBase() {}

  static String env(String name, String dflt) {
    String v = System.getenv(name);
    return (v == null || v.isEmpty()) ? dflt : v;
  }

  static int intEnv(String name, int dflt) {
    String v = env(name, Integer.toString(dflt));
    int n;
    try {
      n = Integer.parseInt(v.trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(name + " must be an integer, got '" + v + "'");
    }
    if (n < 1 || n > 65535) {
      throw new IllegalArgumentException(name + " must be a port (1-65535), got " + n);
    }
    return n;
  }

  public static void main(String[] args) throws Exception {
    String base = env("WEIR_HBASE_BASEDIR", null);
    if (base == null) {
      throw new IllegalArgumentException("WEIR_HBASE_BASEDIR is not set");
    }
    int thriftPort = intEnv("WEIR_HBASE_THRIFT_PORT", 19090);
    int zkPort = intEnv("WEIR_HBASE_ZK_PORT", 12181);
    File baseDir = new File(base).getAbsoluteFile();
    // HBaseTestingUtility puts every directory it makes (ZooKeeper's, the
    // HBase root dir, the WALs) under this one, in a random subdirectory.
    System.setProperty("test.build.data.basedirectory", baseDir.getPath());

    Configuration conf = HBaseConfiguration.create();
    // Loopback only, and the same address everywhere: the master and the
    // region server register 127.0.0.1 in ZooKeeper, whatever the machine's
    // host name resolves to, so clients in this JVM (the Thrift gateway)
    // reach them where they listen.
    conf.set("hbase.zookeeper.quorum", HOST);
    conf.set("hbase.zookeeper.property.clientPortAddress", HOST);
    conf.set("hbase.master.hostname", HOST);
    conf.set("hbase.unsafe.regionserver.hostname", HOST);
    conf.set("hbase.master.ipc.address", HOST);
    conf.set("hbase.regionserver.ipc.address", HOST);
    // No web UIs: they would listen on 0.0.0.0 by default.
    conf.setInt("hbase.master.info.port", -1);
    conf.setInt("hbase.regionserver.info.port", -1);
    // The Thrift gateway: thrift1, TBoundedThreadPoolServer ("threadpool"),
    // binary protocol, unframed transport (HBase's defaults, which the Rust
    // hbase-thrift crate speaks). Its info server would take 0.0.0.0:9095,
    // Kafka's SASL_SSL port here: off.
    conf.set("hbase.regionserver.thrift.ipaddress", HOST);
    conf.setInt("hbase.regionserver.thrift.port", thriftPort);
    conf.setInt("hbase.thrift.info.port", -1);
    conf.set("hbase.regionserver.thrift.server.type", "threadpool");
    conf.setBoolean("hbase.regionserver.thrift.framed", false);
    conf.setBoolean("hbase.regionserver.thrift.compact", false);
    // Fewer idle threads than a production server: the machine is shared
    // with Kafka, HDFS and the tests.
    conf.setInt("hbase.regionserver.handler.count", 10);
    conf.setInt("hbase.master.handler.count", 10);
    // The master assigns hbase:meta only after the region server's first
    // report, which comes one interval after it registered: with the default
    // 3 s, startup took 3-4 s longer. 100 ms (HBase's own tests) saved
    // another 0.5 s but cost about 1.5 % of a core more while idle.
    conf.setInt("hbase.regionserver.msginterval", 500);

    // Stop on SIGTERM/SIGINT from the main thread, not from a JVM shutdown
    // hook (as for MiniDFS: Hadoop code removes its own hooks while
    // stopping, which throws once the JVM is shutting down).
    CountDownLatch stopRequested = new CountDownLatch(1);
    for (String sig : new String[] {"TERM", "INT"}) {
      sun.misc.Signal.handle(new sun.misc.Signal(sig), s -> {
        System.out.println("Got SIG" + s.getName() + ", shutting down HBase");
        stopRequested.countDown();
      });
    }

    long t0 = System.nanoTime();
    HBaseTestingUtility util = new HBaseTestingUtility(conf);
    util.startMiniZKCluster(1, zkPort);
    long tZk = System.nanoTime();
    util.startMiniHBaseCluster(
        StartMiniClusterOption.builder().numMasters(1).numRegionServers(1).build());
    long tHBase = System.nanoTime();

    // The gateway reads the cluster's addresses (ZooKeeper port, master) from
    // the utility's configuration, which startMini* filled in.
    ThriftServer thrift = new ThriftServer(util.getConfiguration());
    Thread thriftThread = new Thread(() -> {
      try {
        int rc = thrift.run();
        if (rc != 0) {
          System.err.println("Thrift server exited with status " + rc);
          System.exit(1);
        }
      } catch (Throwable e) {
        System.err.println("Thrift server failed: " + e);
        e.printStackTrace();
        System.exit(1);
      }
    }, "weir-thrift-server");
    thriftThread.setDaemon(true);
    thriftThread.start();

    // Ready means a real call through the gateway works, not just an open port.
    long deadline = System.currentTimeMillis() + READY_TIMEOUT_MS;
    Exception last = null;
    int tables = -1;
    while (System.currentTimeMillis() < deadline && stopRequested.getCount() > 0) {
      try {
        tables = ThriftCheck.tableCount(HOST, thriftPort);
        break;
      } catch (Exception e) {
        last = e;
        stopRequested.await(200, TimeUnit.MILLISECONDS);
      }
    }
    if (tables < 0 && stopRequested.getCount() > 0) {
      System.err.println("Thrift gateway on " + HOST + ":" + thriftPort
          + " did not answer within " + READY_TIMEOUT_MS / 1000 + " s: " + last);
      System.exit(1);
    }
    long tReady = System.nanoTime();
    if (stopRequested.getCount() > 0) {
      System.out.printf("HBase Thrift: %s:%d, ZooKeeper: %s:%d, data: %s, tables: %d%n",
          HOST, thriftPort, HOST, util.getZkCluster().getClientPort(),
          util.getDataTestDir(), tables);
      System.out.printf("Startup took %.1f s (ZooKeeper %.1f s, HBase %.1f s, Thrift %.1f s)%n",
          (tReady - t0) / 1e9, (tZk - t0) / 1e9, (tHBase - tZk) / 1e9, (tReady - tHBase) / 1e9);
      System.out.println("Ready!");
      System.out.flush();
    }

    stopRequested.await();
    thrift.stop();
    util.shutdownMiniCluster();
    System.out.println("Stopped.");
    System.out.flush();
    System.exit(0);
  }
}
