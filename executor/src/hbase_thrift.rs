//! A small client of HBase's Thrift gateway (the `thrift1` API of
//! `Hbase.thrift`: binary protocol, unframed transport, as the gateway
//! serves by default), for the HBase sink and the tests that read its
//! tables back.
//!
//! Only the calls Weir needs are here, written by hand against the `thrift`
//! crate's protocol types with the field ids of `Hbase.thrift`:
//! `getTableNames`, `getColumnDescriptors`, `createTable`, `disableTable`,
//! `deleteTable`, `mutateRowsTs`, `getVer`, `scannerOpen`,
//! `scannerGetList` and `scannerClose`.
//!
//! Rows for `mutateRowsTs` are encoded ahead of the call
//! ([`encode_row`]), so a sink can keep a batch's rows as the bytes it
//! will send.

use std::io::{BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol, TListIdentifier,
    TMapIdentifier, TMessageIdentifier, TMessageType, TOutputProtocol, TStructIdentifier, TType,
};

/// A failed call, classified by who can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ThriftError {
    /// The connection or the protocol failed (the gateway is down, a
    /// timeout, a reset): retry later.
    #[error("Thrift gateway {addr}: {message}")]
    Transport {
        /// The gateway's address.
        addr: String,
        /// What failed.
        message: String,
    },
    /// HBase's `IOError`: the server failed the call (a missing table or
    /// family, a region not online, …).
    #[error("HBase: {0}")]
    Io(String),
    /// HBase's `IllegalArgument`.
    #[error("HBase refused the arguments: {0}")]
    IllegalArgument(String),
    /// HBase's `AlreadyExists` (from `createTable`).
    #[error("HBase: already exists: {0}")]
    AlreadyExists(String),
}

impl ThriftError {
    /// Whether HBase itself says the table does not exist.
    pub fn table_not_found(&self) -> bool {
        matches!(self, ThriftError::Io(m) if m.contains("TableNotFoundException"))
    }

    /// Whether HBase itself says a column family does not exist.
    pub fn no_such_family(&self) -> bool {
        matches!(self, ThriftError::Io(m) if m.contains("NoSuchColumnFamilyException"))
    }
}

/// A column family of a table (`ColumnDescriptor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// The family's name, without the trailing `:`.
    pub name: Vec<u8>,
    /// How many versions of a cell HBase keeps.
    pub max_versions: i32,
    /// Seconds a cell lives; `-1` or `i32::MAX` for ever.
    pub time_to_live: i32,
}

/// One cell version (`TCell`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The value.
    pub value: Vec<u8>,
    /// The version timestamp.
    pub timestamp: i64,
}

/// One row of a scan (`TRowResult`): the newest version of each column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The row key.
    pub row: Vec<u8>,
    /// `family:qualifier` and its newest cell, sorted by column.
    pub columns: Vec<(Vec<u8>, Cell)>,
}

type Input = TBinaryInputProtocol<BufReader<TcpStream>>;

/// One connection to a Thrift gateway.
pub struct HbaseClient {
    addr: String,
    input: Input,
    output: TcpStream,
    seq: i32,
    /// A call failed mid-way: the connection is out of step, drop it.
    broken: bool,
}

impl std::fmt::Debug for HbaseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HbaseClient")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Appends `value` to `out` through a binary protocol writer.
fn encode(out: &mut Vec<u8>, f: impl FnOnce(&mut dyn TOutputProtocol) -> thrift::Result<()>) {
    let mut p = TBinaryOutputProtocol::new(out, true);
    // Writing into a Vec cannot fail.
    let _ = f(&mut p);
}

/// Appends a `BatchMutation` to `out`: the row key and one put of each
/// `(family:qualifier, value)`. Rows encoded this way are sent by
/// [`HbaseClient::mutate_rows_ts`].
pub fn encode_row<'a>(
    out: &mut Vec<u8>,
    row: &[u8],
    cells: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
) {
    encode(out, |p| {
        p.write_struct_begin(&TStructIdentifier::new("BatchMutation"))?;
        p.write_field_begin(&TFieldIdentifier::new("row", TType::String, 1))?;
        p.write_bytes(row)?;
        p.write_field_end()?;
        p.write_field_begin(&TFieldIdentifier::new("mutations", TType::List, 2))?;
        p.write_list_begin(&TListIdentifier::new(
            TType::Struct,
            i32::try_from(cells.len()).unwrap_or(i32::MAX),
        ))?;
        for (column, value) in cells {
            p.write_struct_begin(&TStructIdentifier::new("Mutation"))?;
            p.write_field_begin(&TFieldIdentifier::new("isDelete", TType::Bool, 1))?;
            p.write_bool(false)?;
            p.write_field_end()?;
            p.write_field_begin(&TFieldIdentifier::new("column", TType::String, 2))?;
            p.write_bytes(column)?;
            p.write_field_end()?;
            p.write_field_begin(&TFieldIdentifier::new("value", TType::String, 3))?;
            p.write_bytes(value)?;
            p.write_field_end()?;
            p.write_field_begin(&TFieldIdentifier::new("writeToWAL", TType::Bool, 4))?;
            p.write_bool(true)?;
            p.write_field_end()?;
            p.write_field_stop()?;
            p.write_struct_end()?;
        }
        p.write_list_end()?;
        p.write_field_end()?;
        p.write_field_stop()?;
        p.write_struct_end()
    });
}

/// An argument of a call.
enum Arg<'a> {
    Bytes(&'a [u8]),
    I32(i32),
    I64(i64),
    /// A list of structs already encoded: the count and the bytes.
    Structs(i32, &'a [u8]),
    /// An empty `map<Text, Text>` (the calls' `attributes`).
    NoAttributes,
}

/// What a result's field 0 (`success`) holds.
enum Reply {
    Void,
    I32(i32),
    TableNames(Vec<Vec<u8>>),
    Families(Vec<Family>),
    Cells(Vec<Cell>),
    Rows(Vec<Row>),
}

#[derive(Clone, Copy)]
enum Expect {
    Void,
    I32,
    TableNames,
    Families,
    Cells,
    Rows,
}

impl HbaseClient {
    /// Connects to the gateway at `addr` (`HOST:PORT`); each call may take
    /// up to `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> Result<HbaseClient, ThriftError> {
        let transport = |message: String| ThriftError::Transport {
            addr: addr.to_string(),
            message,
        };
        let mut last = transport("the address resolves to nothing".into());
        let addrs = addr
            .to_socket_addrs()
            .map_err(|e| transport(format!("resolve: {e}")))?;
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    let setup = stream
                        .set_read_timeout(Some(timeout))
                        .and_then(|_| stream.set_write_timeout(Some(timeout)))
                        .and_then(|_| stream.set_nodelay(true))
                        .and_then(|_| stream.try_clone());
                    let reader = setup.map_err(|e| transport(e.to_string()))?;
                    return Ok(HbaseClient {
                        addr: addr.to_string(),
                        input: TBinaryInputProtocol::new(BufReader::new(reader), true),
                        output: stream,
                        seq: 0,
                        broken: false,
                    });
                }
                Err(e) => last = transport(format!("connect: {e}")),
            }
        }
        Err(last)
    }

    /// Whether the connection can be used again (no call failed mid-way).
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    fn transport(&self, e: impl std::fmt::Display) -> ThriftError {
        ThriftError::Transport {
            addr: self.addr.clone(),
            message: e.to_string(),
        }
    }

    /// Sends `method(args)` and reads its result.
    fn call(
        &mut self,
        method: &str,
        args: &[Arg<'_>],
        expect: Expect,
    ) -> Result<Reply, ThriftError> {
        self.broken = true;
        self.seq = self.seq.wrapping_add(1);
        let mut request = Vec::new();
        let mut tail = Vec::new();
        encode(&mut request, |p| {
            p.write_message_begin(&TMessageIdentifier::new(
                method,
                TMessageType::Call,
                self.seq,
            ))?;
            p.write_struct_begin(&TStructIdentifier::new(format!("{method}_args")))
        });
        for (i, arg) in args.iter().enumerate() {
            let id = i16::try_from(i + 1).unwrap_or(i16::MAX);
            match arg {
                Arg::Bytes(b) => encode(&mut request, |p| {
                    p.write_field_begin(&TFieldIdentifier::new("arg", TType::String, id))?;
                    p.write_bytes(b)?;
                    p.write_field_end()
                }),
                Arg::I32(v) => encode(&mut request, |p| {
                    p.write_field_begin(&TFieldIdentifier::new("arg", TType::I32, id))?;
                    p.write_i32(*v)?;
                    p.write_field_end()
                }),
                Arg::I64(v) => encode(&mut request, |p| {
                    p.write_field_begin(&TFieldIdentifier::new("arg", TType::I64, id))?;
                    p.write_i64(*v)?;
                    p.write_field_end()
                }),
                Arg::Structs(n, bytes) => {
                    encode(&mut request, |p| {
                        p.write_field_begin(&TFieldIdentifier::new("arg", TType::List, id))?;
                        p.write_list_begin(&TListIdentifier::new(TType::Struct, *n))
                    });
                    request.extend_from_slice(bytes);
                    encode(&mut request, |p| {
                        p.write_list_end()?;
                        p.write_field_end()
                    });
                }
                Arg::NoAttributes => encode(&mut request, |p| {
                    p.write_field_begin(&TFieldIdentifier::new("attributes", TType::Map, id))?;
                    p.write_map_begin(&TMapIdentifier::new(TType::String, TType::String, 0))?;
                    p.write_map_end()?;
                    p.write_field_end()
                }),
            }
        }
        // The arguments' end. (Struct ends write nothing in the binary
        // protocol, and a writer of its own would count one too many.)
        encode(&mut tail, |p| {
            p.write_field_stop()?;
            p.write_message_end()
        });
        request.extend_from_slice(&tail);
        self.output
            .write_all(&request)
            .and_then(|_| self.output.flush())
            .map_err(|e| self.transport(format!("{method}: {e}")))?;
        let reply = self.read_reply(method, expect);
        match &reply {
            Err(ThriftError::Transport { .. }) => {}
            _ => self.broken = false,
        }
        reply
    }

    fn read_reply(&mut self, method: &str, expect: Expect) -> Result<Reply, ThriftError> {
        let t = |e: thrift::Error| ThriftError::Transport {
            addr: String::new(),
            message: format!("{method}: {e}"),
        };
        let fix = |e: ThriftError, addr: &str| match e {
            ThriftError::Transport { message, .. } => ThriftError::Transport {
                addr: addr.to_string(),
                message,
            },
            e => e,
        };
        let addr = self.addr.clone();
        let p = &mut self.input;
        let header = p
            .read_message_begin()
            .map_err(t)
            .map_err(|e| fix(e, &addr))?;
        if header.message_type == TMessageType::Exception {
            let e = thrift::Error::read_application_error_from_in_protocol(p)
                .map(|a| a.message)
                .unwrap_or_else(|e| e.to_string());
            let _ = p.read_message_end();
            return Err(ThriftError::Transport {
                addr,
                message: format!("{method}: {e}"),
            });
        }
        if header.sequence_number != self.seq || header.name != method {
            return Err(ThriftError::Transport {
                addr,
                message: format!(
                    "{method}: the reply is for {} #{} (expected #{})",
                    header.name, header.sequence_number, self.seq
                ),
            });
        }
        let out = read_result(p, expect).map_err(|e| fix(e, &addr));
        p.read_message_end().map_err(t).map_err(|e| fix(e, &addr))?;
        out?
    }

    /// The tables' names.
    pub fn get_table_names(&mut self) -> Result<Vec<Vec<u8>>, ThriftError> {
        match self.call("getTableNames", &[], Expect::TableNames)? {
            Reply::TableNames(n) => Ok(n),
            _ => Ok(Vec::new()),
        }
    }

    /// The column families of `table`.
    pub fn get_column_descriptors(&mut self, table: &[u8]) -> Result<Vec<Family>, ThriftError> {
        match self.call(
            "getColumnDescriptors",
            &[Arg::Bytes(table)],
            Expect::Families,
        )? {
            Reply::Families(f) => Ok(f),
            _ => Ok(Vec::new()),
        }
    }

    /// Creates `table` with `families` (name, versions kept).
    pub fn create_table(
        &mut self,
        table: &[u8],
        families: &[(&[u8], i32)],
    ) -> Result<(), ThriftError> {
        let mut bytes = Vec::new();
        for (name, versions) in families {
            let mut name = name.to_vec();
            name.push(b':');
            encode(&mut bytes, |p| {
                p.write_struct_begin(&TStructIdentifier::new("ColumnDescriptor"))?;
                p.write_field_begin(&TFieldIdentifier::new("name", TType::String, 1))?;
                p.write_bytes(&name)?;
                p.write_field_end()?;
                p.write_field_begin(&TFieldIdentifier::new("maxVersions", TType::I32, 2))?;
                p.write_i32(*versions)?;
                p.write_field_end()?;
                p.write_field_stop()?;
                p.write_struct_end()
            });
        }
        let n = i32::try_from(families.len()).unwrap_or(i32::MAX);
        self.call(
            "createTable",
            &[Arg::Bytes(table), Arg::Structs(n, &bytes)],
            Expect::Void,
        )?;
        Ok(())
    }

    /// Disables `table` (before [`delete_table`](Self::delete_table)).
    pub fn disable_table(&mut self, table: &[u8]) -> Result<(), ThriftError> {
        self.call("disableTable", &[Arg::Bytes(table)], Expect::Void)?;
        Ok(())
    }

    /// Deletes a disabled `table`.
    pub fn delete_table(&mut self, table: &[u8]) -> Result<(), ThriftError> {
        self.call("deleteTable", &[Arg::Bytes(table)], Expect::Void)?;
        Ok(())
    }

    /// Writes `count` rows encoded by [`encode_row`] into `rows`, every
    /// cell at version `timestamp`.
    pub fn mutate_rows_ts(
        &mut self,
        table: &[u8],
        count: i32,
        rows: &[u8],
        timestamp: i64,
    ) -> Result<(), ThriftError> {
        self.call(
            "mutateRowsTs",
            &[
                Arg::Bytes(table),
                Arg::Structs(count, rows),
                Arg::I64(timestamp),
                Arg::NoAttributes,
            ],
            Expect::Void,
        )?;
        Ok(())
    }

    /// Up to `versions` versions of one cell, newest first.
    pub fn get_ver(
        &mut self,
        table: &[u8],
        row: &[u8],
        column: &[u8],
        versions: i32,
    ) -> Result<Vec<Cell>, ThriftError> {
        match self.call(
            "getVer",
            &[
                Arg::Bytes(table),
                Arg::Bytes(row),
                Arg::Bytes(column),
                Arg::I32(versions),
                Arg::NoAttributes,
            ],
            Expect::Cells,
        )? {
            Reply::Cells(c) => Ok(c),
            _ => Ok(Vec::new()),
        }
    }

    /// Every row of `table` with the newest version of each of its cells
    /// in `columns` (`family` for a whole family, `family:qualifier` for
    /// one column).
    pub fn scan(&mut self, table: &[u8], columns: &[&[u8]]) -> Result<Vec<Row>, ThriftError> {
        let mut names = Vec::new();
        for c in columns {
            encode(&mut names, |p| p.write_bytes(c));
        }
        // scannerOpen(tableName, startRow, columns: list<Text>, attributes)
        let mut args = Vec::new();
        encode(&mut args, |p| {
            p.write_list_begin(&TListIdentifier::new(
                TType::String,
                i32::try_from(columns.len()).unwrap_or(i32::MAX),
            ))
        });
        args.extend_from_slice(&names);
        let id = match self.call_scanner_open(table, &args)? {
            Reply::I32(id) => id,
            _ => return Ok(Vec::new()),
        };
        let mut rows = Vec::new();
        let result = loop {
            match self.call(
                "scannerGetList",
                &[Arg::I32(id), Arg::I32(1_000)],
                Expect::Rows,
            ) {
                Ok(Reply::Rows(batch)) if !batch.is_empty() => rows.extend(batch),
                Ok(_) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let closed = self.call("scannerClose", &[Arg::I32(id)], Expect::Void);
        result?;
        closed?;
        Ok(rows)
    }

    fn call_scanner_open(&mut self, table: &[u8], columns: &[u8]) -> Result<Reply, ThriftError> {
        // The column list is a list of strings, not structs: written by
        // hand after the other arguments' framing.
        self.broken = true;
        self.seq = self.seq.wrapping_add(1);
        let mut request = Vec::new();
        encode(&mut request, |p| {
            p.write_message_begin(&TMessageIdentifier::new(
                "scannerOpen",
                TMessageType::Call,
                self.seq,
            ))?;
            p.write_struct_begin(&TStructIdentifier::new("scannerOpen_args"))?;
            p.write_field_begin(&TFieldIdentifier::new("tableName", TType::String, 1))?;
            p.write_bytes(table)?;
            p.write_field_end()?;
            p.write_field_begin(&TFieldIdentifier::new("startRow", TType::String, 2))?;
            p.write_bytes(b"")?;
            p.write_field_end()?;
            p.write_field_begin(&TFieldIdentifier::new("columns", TType::List, 3))
        });
        request.extend_from_slice(columns);
        encode(&mut request, |p| {
            p.write_list_end()?;
            p.write_field_end()?;
            p.write_field_begin(&TFieldIdentifier::new("attributes", TType::Map, 4))?;
            p.write_map_begin(&TMapIdentifier::new(TType::String, TType::String, 0))?;
            p.write_map_end()?;
            p.write_field_end()?;
            p.write_field_stop()?;
            p.write_message_end()
        });
        self.output
            .write_all(&request)
            .and_then(|_| self.output.flush())
            .map_err(|e| self.transport(format!("scannerOpen: {e}")))?;
        let reply = self.read_reply("scannerOpen", Expect::I32);
        if !matches!(reply, Err(ThriftError::Transport { .. })) {
            self.broken = false;
        }
        reply
    }
}

/// Reads a `*_result` struct: field 0 the success value, fields 1 to 3
/// the declared exceptions.
fn read_result(p: &mut Input, expect: Expect) -> Result<Result<Reply, ThriftError>, ThriftError> {
    let t = |e: thrift::Error| ThriftError::Transport {
        addr: String::new(),
        message: e.to_string(),
    };
    let mut out = Ok(Reply::Void);
    p.read_struct_begin().map_err(t)?;
    loop {
        let field = p.read_field_begin().map_err(t)?;
        if field.field_type == TType::Stop {
            break;
        }
        match (field.id, field.field_type, expect) {
            (Some(0), TType::I32, Expect::I32) => out = Ok(Reply::I32(p.read_i32().map_err(t)?)),
            (Some(0), TType::List, Expect::TableNames) => {
                let list = p.read_list_begin().map_err(t)?;
                let mut names = Vec::new();
                for _ in 0..list.size {
                    names.push(p.read_bytes().map_err(t)?);
                }
                p.read_list_end().map_err(t)?;
                out = Ok(Reply::TableNames(names));
            }
            (Some(0), TType::Map, Expect::Families) => {
                let map = p.read_map_begin().map_err(t)?;
                let mut families = Vec::new();
                for _ in 0..map.size {
                    p.read_bytes().map_err(t)?;
                    families.push(read_family(p).map_err(t)?);
                }
                p.read_map_end().map_err(t)?;
                out = Ok(Reply::Families(families));
            }
            (Some(0), TType::List, Expect::Cells) => {
                let list = p.read_list_begin().map_err(t)?;
                let mut cells = Vec::new();
                for _ in 0..list.size {
                    cells.push(read_cell(p).map_err(t)?);
                }
                p.read_list_end().map_err(t)?;
                out = Ok(Reply::Cells(cells));
            }
            (Some(0), TType::List, Expect::Rows) => {
                let list = p.read_list_begin().map_err(t)?;
                let mut rows = Vec::new();
                for _ in 0..list.size {
                    rows.push(read_row(p).map_err(t)?);
                }
                p.read_list_end().map_err(t)?;
                out = Ok(Reply::Rows(rows));
            }
            (Some(id @ 1..=3), TType::Struct, _) => {
                // The server's exception line, without its Java stack.
                let message = read_message(p).map_err(t)?;
                let message = message.lines().next().unwrap_or_default().to_string();
                out = Err(match id {
                    1 => ThriftError::Io(message),
                    2 => ThriftError::IllegalArgument(message),
                    _ => ThriftError::AlreadyExists(message),
                });
            }
            (_, ty, _) => p.skip(ty).map_err(t)?,
        }
        p.read_field_end().map_err(t)?;
    }
    p.read_struct_end().map_err(t)?;
    Ok(out)
}

/// Reads a struct with its field ids and types, calling `field` for each
/// (which must consume the value or return `false` to have it skipped).
fn read_struct(
    p: &mut Input,
    mut field: impl FnMut(&mut Input, i16, TType) -> thrift::Result<bool>,
) -> thrift::Result<()> {
    p.read_struct_begin()?;
    loop {
        let f = p.read_field_begin()?;
        if f.field_type == TType::Stop {
            break;
        }
        if !field(p, f.id.unwrap_or(-1), f.field_type)? {
            p.skip(f.field_type)?;
        }
        p.read_field_end()?;
    }
    p.read_struct_end()
}

/// An exception's `message` (field 1).
fn read_message(p: &mut Input) -> thrift::Result<String> {
    let mut message = String::new();
    read_struct(p, |p, id, ty| {
        if (id, ty) == (1, TType::String) {
            message = String::from_utf8_lossy(&p.read_bytes()?).into_owned();
            return Ok(true);
        }
        Ok(false)
    })?;
    Ok(message)
}

fn read_family(p: &mut Input) -> thrift::Result<Family> {
    let mut f = Family {
        name: Vec::new(),
        max_versions: 3,
        time_to_live: -1,
    };
    read_struct(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::String) => {
                let mut name = p.read_bytes()?;
                if name.last() == Some(&b':') {
                    name.pop();
                }
                f.name = name;
            }
            (2, TType::I32) => f.max_versions = p.read_i32()?,
            (9, TType::I32) => f.time_to_live = p.read_i32()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(f)
}

fn read_cell(p: &mut Input) -> thrift::Result<Cell> {
    let mut c = Cell {
        value: Vec::new(),
        timestamp: 0,
    };
    read_struct(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::String) => c.value = p.read_bytes()?,
            (2, TType::I64) => c.timestamp = p.read_i64()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(c)
}

fn read_row(p: &mut Input) -> thrift::Result<Row> {
    let mut r = Row {
        row: Vec::new(),
        columns: Vec::new(),
    };
    read_struct(p, |p, id, ty| {
        match (id, ty) {
            (1, TType::String) => r.row = p.read_bytes()?,
            (2, TType::Map) => {
                let map = p.read_map_begin()?;
                for _ in 0..map.size {
                    let column = p.read_bytes()?;
                    let cell = read_cell(p)?;
                    r.columns.push((column, cell));
                }
                p.read_map_end()?;
            }
            // sortedColumns: list<TColumn>, the same cells in order.
            (3, TType::List) => {
                let list = p.read_list_begin()?;
                for _ in 0..list.size {
                    let mut column = Vec::new();
                    let mut cell = None;
                    read_struct(p, |p, id, ty| {
                        match (id, ty) {
                            (1, TType::String) => column = p.read_bytes()?,
                            (2, TType::Struct) => cell = Some(read_cell(p)?),
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                    if let Some(cell) = cell {
                        if !r.columns.iter().any(|(c, _)| *c == column) {
                            r.columns.push((column, cell));
                        }
                    }
                }
                p.read_list_end()?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    r.columns.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `BatchMutation` as `Hbase.thrift`'s generated code writes it:
    /// row (1, binary), mutations (2, list of Mutation: isDelete 1,
    /// column 2, value 3, writeToWAL 4).
    #[test]
    fn rows_encode_as_batch_mutations() {
        let mut out = Vec::new();
        let cells: Vec<(&[u8], &[u8])> = vec![(b"f:n", b"42")];
        encode_row(&mut out, b"k", cells.into_iter());
        let expected: Vec<u8> = [
            &[11u8, 0, 1, 0, 0, 0, 1, b'k'][..],
            &[15, 0, 2, 12, 0, 0, 0, 1],
            &[2, 0, 1, 0],
            &[11, 0, 2, 0, 0, 0, 3, b'f', b':', b'n'],
            &[11, 0, 3, 0, 0, 0, 2, b'4', b'2'],
            &[2, 0, 4, 1],
            &[0],
            &[0],
        ]
        .concat();
        assert_eq!(out, expected);
    }
}
