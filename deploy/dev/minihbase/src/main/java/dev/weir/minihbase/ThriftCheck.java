package dev.weir.minihbase;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

import org.apache.hadoop.hbase.thrift.generated.ColumnDescriptor;
import org.apache.hadoop.hbase.thrift.generated.Hbase;
import org.apache.hadoop.hbase.thrift.generated.Mutation;
import org.apache.hadoop.hbase.thrift.generated.TCell;
import org.apache.thrift.protocol.TBinaryProtocol;
import org.apache.thrift.transport.TSocket;
import org.apache.thrift.transport.TTransport;

/**
 * A client of the dev HBase's Thrift gateway, as the Weir HBase sink talks to
 * it (thrift1, binary protocol, unframed transport): run by
 * {@code deploy/dev/hbase.sh check}.
 *
 * <p>{@code ThriftCheck HOST PORT}: creates a table, writes one cell at
 * version (timestamp) 7, writes it again at 7 (the same cell: a replayed
 * batch overwrites rather than adds) and once at 8, reads the versions back,
 * then disables and deletes the table. Exits 0 only if every step gave what
 * it should.
 */
public final class ThriftCheck {
  private static final Map<ByteBuffer, ByteBuffer> NO_ATTRS = Collections.emptyMap();

  private ThriftCheck() {}

  static ByteBuffer buf(String s) {
    return ByteBuffer.wrap(s.getBytes(StandardCharsets.UTF_8));
  }

  static String str(ByteBuffer b) {
    byte[] a = new byte[b.remaining()];
    b.duplicate().get(a);
    return new String(a, StandardCharsets.UTF_8);
  }

  private static TTransport open(String host, int port) throws Exception {
    TSocket socket = new TSocket(host, port);
    socket.setTimeout(30_000);
    socket.open();
    return socket;
  }

  /** The number of tables, through the gateway: fails unless HBase answers. */
  static int tableCount(String host, int port) throws Exception {
    TTransport t = open(host, port);
    try {
      return new Hbase.Client(new TBinaryProtocol(t)).getTableNames().size();
    } finally {
      t.close();
    }
  }

  private static void fail(String what) {
    System.err.println("HBase Thrift check failed: " + what);
    System.exit(1);
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 2) {
      System.err.println("usage: ThriftCheck HOST PORT");
      System.exit(2);
    }
    String host = args[0];
    int port = Integer.parseInt(args[1]);
    String table = "weir_check_" + System.currentTimeMillis();
    ByteBuffer t = buf(table);
    ByteBuffer row = buf("row-1");
    ByteBuffer column = buf("f:c");

    TTransport transport = open(host, port);
    try {
      Hbase.Client client = new Hbase.Client(new TBinaryProtocol(transport));
      ColumnDescriptor family = new ColumnDescriptor();
      family.setName(buf("f:"));
      family.setMaxVersions(3);
      client.createTable(t, Collections.singletonList(family));

      List<Mutation> v1 = Collections.singletonList(new Mutation(false, column, buf("v1"), true));
      List<Mutation> v2 = Collections.singletonList(new Mutation(false, column, buf("v2"), true));
      client.mutateRowTs(t, row, v1, 7L, NO_ATTRS);
      client.mutateRowTs(t, row, v1, 7L, NO_ATTRS);
      client.mutateRowTs(t, row, v2, 8L, NO_ATTRS);

      List<TCell> cells = client.getVer(t, row, column, 10, NO_ATTRS);
      List<String> got = new ArrayList<>();
      for (TCell c : cells) {
        got.add(c.getTimestamp() + "=" + str(c.bufferForValue()));
      }
      if (!got.equals(List.of("8=v2", "7=v1"))) {
        fail("table " + table + ": versions of row-1 f:c are " + got + ", expected [8=v2, 7=v1]");
      }

      boolean listed = false;
      for (ByteBuffer name : client.getTableNames()) {
        listed |= str(name).equals(table);
      }
      if (!listed) {
        fail("table " + table + " is not listed by getTableNames");
      }
      client.disableTable(t);
      client.deleteTable(t);
      for (ByteBuffer name : client.getTableNames()) {
        if (str(name).equals(table)) {
          fail("table " + table + " is still listed after deleteTable");
        }
      }
      System.out.println("Thrift gateway " + host + ":" + port + ": created " + table
          + ", wrote versions 7 (twice) and 8, read back " + got + ", deleted it");
    } finally {
      transport.close();
    }
  }
}
