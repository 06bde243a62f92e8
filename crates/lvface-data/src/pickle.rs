//! A pickle reader for plain data only, and a protocol-4 writer.
//!
//! The reader understands the opcodes Python emits for `None`, bools, ints, floats, bytes, str,
//! lists, tuples and dicts in protocols 2 to 5 (including Python 2 cPickle's `BINSTRING`, read as
//! bytes as `encoding='bytes'` would). Every opcode that imports, calls or builds an object
//! (`GLOBAL`, `STACK_GLOBAL`, `REDUCE`, `BUILD`, `INST`, `OBJ`, `NEWOBJ`, `NEWOBJ_EX`, `EXT*`,
//! persistent ids, out-of-band buffers) is refused with an error naming it: nothing in a file can
//! make the reader run code. Lengths are checked against the remaining input before allocating.
//!
//! Python shares the object that `DUP` or a memo read pushes; this reader copies it. A few
//! hundred bytes of `DUP`s and memo reads nested into containers would then double the value at
//! every step (found by fuzzing), so the values copied by `DUP`, memo stores and memo reads may
//! add up to at most [`COPY_BUDGET_PER_BYTE`] times the input length (plus 64 KiB); a real
//! `.bin` copies each image at most about twice (memo store of the bytes, then of the tuple
//! that holds them).
//!
//! One pattern is recognised rather than refused: Python 3 pickles `bytes` in protocol 2 as
//! `_codecs.encode(str, 'latin1')` (`GLOBAL` + `REDUCE`). The reader matches exactly that call
//! and turns it into the bytes it denotes; no function is looked up or called.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{DataError, Result};

/// A plain pickled value.
#[derive(Debug, Clone, PartialEq)]
pub enum PickleValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An int that fits 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// `bytes` (and Python 2 `str`).
    Bytes(Vec<u8>),
    /// `str` (Python 2 `unicode`).
    Str(String),
    /// A list.
    List(Vec<PickleValue>),
    /// A tuple.
    Tuple(Vec<PickleValue>),
    /// A dict, as key-value pairs in insertion order.
    Dict(Vec<(PickleValue, PickleValue)>),
}

/// How many units of value (one per node, plus the length of every bytes or str) `DUP` and the
/// memo may copy per input byte; see the module documentation.
pub const COPY_BUDGET_PER_BYTE: u64 = 8;

/// How many containers deep a value may nest. A verification set is 2 (a tuple of lists); the
/// bound keeps the recursive `Drop`, `Clone` and `Debug` of a hostile value off the stack's end.
pub const MAX_NESTING: usize = 32;

/// Refuses `items` if a container holding them would nest more than [`MAX_NESTING`] deep; it
/// looks at most `MAX_NESTING` levels down, without recursion.
fn check_nesting(items: &[PickleValue], r: &Reader) -> Result<()> {
    let mut todo: Vec<(&PickleValue, usize)> = items.iter().map(|v| (v, 1)).collect();
    while let Some((value, depth)) = todo.pop() {
        let children: Box<dyn Iterator<Item = &PickleValue>> = match value {
            PickleValue::List(items) | PickleValue::Tuple(items) => Box::new(items.iter()),
            PickleValue::Dict(pairs) => Box::new(pairs.iter().flat_map(|(k, v)| [k, v])),
            _ => continue,
        };
        if depth + 1 > MAX_NESTING {
            return Err(r.err(format!(
                "values nested more than {MAX_NESTING} containers deep (a verification set is 2)"
            )));
        }
        todo.extend(children.map(|c| (c, depth + 1)));
    }
    Ok(())
}

/// The size of `value` in copy-budget units, without recursion (a deep value cannot overflow
/// the stack here).
fn weight(value: &PickleValue) -> u64 {
    let mut total = 0u64;
    let mut todo = vec![value];
    while let Some(v) = todo.pop() {
        total += 1;
        match v {
            PickleValue::Bytes(b) => total += b.len() as u64,
            PickleValue::Str(text) => total += text.len() as u64,
            PickleValue::List(items) | PickleValue::Tuple(items) => todo.extend(items),
            PickleValue::Dict(pairs) => todo.extend(pairs.iter().flat_map(|(k, v)| [k, v])),
            _ => {}
        }
    }
    total
}

/// Opcodes that would import or call something, refused by name.
fn refused(op: u8) -> Option<&'static str> {
    Some(match op {
        0x93 => "STACK_GLOBAL",
        b'b' => "BUILD",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

#[derive(Clone)]
enum Item {
    Mark,
    Value(PickleValue),
    /// The global `_codecs.encode`, only ever applied by the `REDUCE` pattern above.
    CodecsEncode,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed, for errors.
    op_at: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: impl Into<String>) -> DataError {
        DataError::Pickle {
            path: self.path.to_path_buf(),
            offset: self.op_at as u64,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(self.err(format!(
                "truncated: the opcode needs {n} bytes but only {left} remain"
            )));
        }
        let bytes = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(bytes)
    }

    fn uint(&mut self, width: usize) -> Result<u64> {
        let bytes = self.take(width as u64)?;
        let mut buf = [0u8; 8];
        buf[..width].copy_from_slice(bytes);
        Ok(u64::from_le_bytes(buf))
    }

    /// A newline-terminated argument of a text opcode, without the newline.
    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.err("truncated: a text argument has no newline"));
        };
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    fn sized(&mut self, width: usize) -> Result<&'a [u8]> {
        let len = self.uint(width)?;
        self.take(len)
    }
}

/// Parses a pickle holding plain data; `path` names the source in errors.
pub fn read_pickle(data: &[u8], path: &Path) -> Result<PickleValue> {
    let mut r = Reader {
        data,
        pos: 0,
        op_at: 0,
        path,
    };
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: HashMap<u64, Item> = HashMap::new();
    let mut copy_budget = COPY_BUDGET_PER_BYTE * data.len() as u64 + 65_536;
    let mut copy = |value: &PickleValue, r: &Reader| -> Result<PickleValue> {
        let cost = weight(value);
        if cost > copy_budget {
            return Err(r.err(format!(
                "DUP and memo copies exceed {COPY_BUDGET_PER_BYTE} x the input size: a value \
                 shared many times over, not a verification set"
            )));
        }
        copy_budget -= cost;
        Ok(value.clone())
    };
    loop {
        r.op_at = r.pos;
        let Some(&op) = data.get(r.pos) else {
            return Err(r.err("truncated: the stream ends before STOP"));
        };
        r.pos += 1;
        if let Some(name) = refused(op) {
            return Err(r.err(format!(
                "refusing opcode {name} ({op:#04x}): it would import or call Python code; a \
                 verification set holds only bytes, lists, tuples and bools"
            )));
        }
        let pop = |stack: &mut Vec<Item>, r: &Reader| match stack.pop() {
            Some(Item::Value(v)) => Ok(v),
            Some(Item::Mark) => Err(r.err("a MARK where a value was expected")),
            Some(Item::CodecsEncode) => Err(r.err("a global where a value was expected")),
            None => Err(r.err("the stack is empty")),
        };
        let pop_mark = |stack: &mut Vec<Item>, r: &Reader| -> Result<Vec<PickleValue>> {
            let Some(mark) = stack.iter().rposition(|i| matches!(i, Item::Mark)) else {
                return Err(r.err("no MARK on the stack"));
            };
            let items = stack.split_off(mark + 1);
            stack.pop();
            items
                .into_iter()
                .map(|i| match i {
                    Item::Value(v) => Ok(v),
                    _ => Err(r.err("a global inside a list, tuple or dict")),
                })
                .collect()
        };
        let value = match op {
            0x80 => {
                let proto = r.uint(1)?;
                if proto > 5 {
                    return Err(r.err(format!("unsupported protocol {proto}")));
                }
                continue;
            }
            0x95 => {
                r.uint(8)?; // FRAME: a length hint only.
                continue;
            }
            b'.' => {
                let value = pop(&mut stack, &r)?;
                return if stack.is_empty() {
                    Ok(value)
                } else {
                    Err(r.err(format!("STOP with {} items left on the stack", stack.len())))
                };
            }
            b'(' => {
                stack.push(Item::Mark);
                continue;
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                if (module, name) != (b"_codecs".as_slice(), b"encode".as_slice()) {
                    return Err(r.err(format!(
                        "refusing opcode GLOBAL (0x63) {}.{}: it would import Python code",
                        String::from_utf8_lossy(module),
                        String::from_utf8_lossy(name)
                    )));
                }
                stack.push(Item::CodecsEncode);
                continue;
            }
            b'R' => match (stack.pop(), stack.pop()) {
                (Some(Item::Value(PickleValue::Tuple(args))), Some(Item::CodecsEncode)) => {
                    latin1_bytes(&args).ok_or_else(|| {
                        r.err("refusing opcode REDUCE (0x52): only _codecs.encode(str, 'latin1') is read")
                    })?
                }
                _ => {
                    return Err(r.err(
                        "refusing opcode REDUCE (0x52): it would call Python code; a verification set holds only bytes, lists, tuples and bools",
                    ))
                }
            },
            b'N' => PickleValue::None,
            0x88 => PickleValue::Bool(true),
            0x89 => PickleValue::Bool(false),
            b'J' => PickleValue::Int(r.uint(4)? as u32 as i32 as i64),
            b'K' => PickleValue::Int(r.uint(1)? as i64),
            b'M' => PickleValue::Int(r.uint(2)? as i64),
            0x8a | 0x8b => {
                let bytes = if op == 0x8a { r.sized(1)? } else { r.sized(4)? };
                if bytes.len() > 8 {
                    return Err(r.err(format!("an int of {} bytes does not fit 64 bits", bytes.len())));
                }
                let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
                let mut buf = [if negative { 0xff } else { 0 }; 8];
                buf[..bytes.len()].copy_from_slice(bytes);
                PickleValue::Int(i64::from_le_bytes(buf))
            }
            b'G' => {
                let bytes = r.take(8)?;
                PickleValue::Float(f64::from_be_bytes(bytes.try_into().expect("8 bytes")))
            }
            b'U' | b'C' => PickleValue::Bytes(r.sized(1)?.to_vec()),
            b'T' => {
                let len = r.uint(4)? as u32 as i32;
                if len < 0 {
                    return Err(r.err(format!("negative BINSTRING length {len}")));
                }
                PickleValue::Bytes(r.take(len as u64)?.to_vec())
            }
            b'B' => PickleValue::Bytes(r.sized(4)?.to_vec()),
            0x8e | 0x96 => PickleValue::Bytes(r.sized(8)?.to_vec()),
            0x8c | b'X' | 0x8d => {
                let bytes = match op {
                    0x8c => r.sized(1)?,
                    b'X' => r.sized(4)?,
                    _ => r.sized(8)?,
                };
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| r.err(format!("str is not UTF-8: {e}")))?;
                PickleValue::Str(text.to_owned())
            }
            b')' => PickleValue::Tuple(Vec::new()),
            b']' => PickleValue::List(Vec::new()),
            b'}' => PickleValue::Dict(Vec::new()),
            b't' | b'l' => {
                let items = pop_mark(&mut stack, &r)?;
                check_nesting(&items, &r)?;
                if op == b't' {
                    PickleValue::Tuple(items)
                } else {
                    PickleValue::List(items)
                }
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(pop(&mut stack, &r)?);
                }
                items.reverse();
                check_nesting(&items, &r)?;
                PickleValue::Tuple(items)
            }
            b'd' => {
                let items = pop_mark(&mut stack, &r)?;
                check_nesting(&items, &r)?;
                PickleValue::Dict(pairs(items, &r)?)
            }
            b'a' | b'e' => {
                let items = if op == b'a' { vec![pop(&mut stack, &r)?] } else { pop_mark(&mut stack, &r)? };
                check_nesting(&items, &r)?;
                match stack.last_mut() {
                    Some(Item::Value(PickleValue::List(list))) => list.extend(items),
                    _ => return Err(r.err("APPEND(S) onto something that is not a list")),
                }
                continue;
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let value = pop(&mut stack, &r)?;
                    vec![pop(&mut stack, &r)?, value]
                } else {
                    pop_mark(&mut stack, &r)?
                };
                check_nesting(&items, &r)?;
                let new = pairs(items, &r)?;
                match stack.last_mut() {
                    Some(Item::Value(PickleValue::Dict(dict))) => dict.extend(new),
                    _ => return Err(r.err("SETITEM(S) onto something that is not a dict")),
                }
                continue;
            }
            b'q' | b'r' | 0x94 => {
                let id = match op {
                    b'q' => r.uint(1)?,
                    b'r' => r.uint(4)?,
                    _ => memo.len() as u64,
                };
                match stack.last() {
                    Some(Item::Value(v)) => {
                        memo.insert(id, Item::Value(copy(v, &r)?));
                    }
                    Some(Item::CodecsEncode) => {
                        memo.insert(id, Item::CodecsEncode);
                    }
                    _ => return Err(r.err("memoizing with no value on the stack")),
                }
                continue;
            }
            b'h' | b'j' => {
                let id = if op == b'h' { r.uint(1)? } else { r.uint(4)? };
                match memo.get(&id) {
                    // Lists and dicts may have changed since they were memoized: a shared or
                    // recursive reference is not plain data.
                    Some(Item::Value(PickleValue::List(_) | PickleValue::Dict(_))) => {
                        return Err(r.err(format!("memo {id} is a shared list or dict reference")))
                    }
                    Some(Item::Value(v)) => copy(v, &r)?,
                    Some(Item::CodecsEncode) => {
                        stack.push(Item::CodecsEncode);
                        continue;
                    }
                    _ => return Err(r.err(format!("memo {id} was never stored"))),
                }
            }
            b'0' => {
                stack.pop().ok_or_else(|| r.err("POP on an empty stack"))?;
                continue;
            }
            b'1' => {
                pop_mark(&mut stack, &r)?;
                continue;
            }
            b'2' => match stack.last() {
                Some(Item::Value(v)) => copy(v, &r)?,
                _ => return Err(r.err("DUP with no value on the stack")),
            },
            _ => {
                return Err(r.err(format!(
                    "unsupported opcode {op:#04x} (text protocols 0 and 1 and sets are not read)"
                )))
            }
        };
        stack.push(Item::Value(value));
    }
}

/// The bytes `_codecs.encode(s, 'latin1')` returns, when `args` is `(s, 'latin1')` and every
/// character of `s` is below U+0100.
fn latin1_bytes(args: &[PickleValue]) -> Option<PickleValue> {
    let [PickleValue::Str(text), PickleValue::Str(encoding)] = args else {
        return None;
    };
    if encoding != "latin1" && encoding != "latin-1" {
        return None;
    }
    text.chars()
        .map(|c| u8::try_from(c).ok())
        .collect::<Option<Vec<u8>>>()
        .map(PickleValue::Bytes)
}

fn pairs(items: Vec<PickleValue>, r: &Reader) -> Result<Vec<(PickleValue, PickleValue)>> {
    if items.len() % 2 != 0 {
        return Err(r.err("a dict needs an even number of keys and values"));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// Pickles `value` with protocol 4 (no frames, no memo), which Python 3.4+ reads.
pub fn write_pickle(value: &PickleValue) -> Vec<u8> {
    let mut out = vec![0x80, 4];
    write_value(value, &mut out);
    out.push(b'.');
    out
}

fn write_value(value: &PickleValue, out: &mut Vec<u8>) {
    match value {
        PickleValue::None => out.push(b'N'),
        PickleValue::Bool(b) => out.push(if *b { 0x88 } else { 0x89 }),
        PickleValue::Int(i) => match u8::try_from(*i) {
            Ok(small) => out.extend_from_slice(&[b'K', small]),
            Err(_) => match i32::try_from(*i) {
                Ok(i) => {
                    out.push(b'J');
                    out.extend_from_slice(&i.to_le_bytes());
                }
                Err(_) => {
                    out.extend_from_slice(&[0x8a, 8]);
                    out.extend_from_slice(&i.to_le_bytes());
                }
            },
        },
        PickleValue::Float(f) => {
            out.push(b'G');
            out.extend_from_slice(&f.to_be_bytes());
        }
        PickleValue::Bytes(b) => {
            match u8::try_from(b.len()) {
                Ok(n) => out.extend_from_slice(&[b'C', n]),
                Err(_) => match u32::try_from(b.len()) {
                    Ok(n) => {
                        out.push(b'B');
                        out.extend_from_slice(&n.to_le_bytes());
                    }
                    Err(_) => {
                        out.push(0x8e);
                        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
                    }
                },
            }
            out.extend_from_slice(b);
        }
        PickleValue::Str(s) => {
            match u8::try_from(s.len()) {
                Ok(n) => out.extend_from_slice(&[0x8c, n]),
                Err(_) => {
                    out.push(0x8d);
                    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                }
            }
            out.extend_from_slice(s.as_bytes());
        }
        PickleValue::List(items) => {
            out.push(b']');
            if !items.is_empty() {
                out.push(b'(');
                items.iter().for_each(|v| write_value(v, out));
                out.push(b'e');
            }
        }
        PickleValue::Tuple(items) => {
            out.push(b'(');
            items.iter().for_each(|v| write_value(v, out));
            out.push(b't');
        }
        PickleValue::Dict(pairs) => {
            out.push(b'}');
            if !pairs.is_empty() {
                out.push(b'(');
                for (k, v) in pairs {
                    write_value(k, out);
                    write_value(v, out);
                }
                out.push(b'u');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PickleValue::*;

    fn read(bytes: &[u8]) -> Result<PickleValue> {
        read_pickle(bytes, Path::new("set.bin"))
    }

    fn pair_set() -> PickleValue {
        Tuple(vec![
            List(vec![Bytes(b"ab".to_vec()), Bytes(b"cd".to_vec())]),
            List(vec![Bool(true)]),
        ])
    }

    #[test]
    fn reads_python2_cpickle_protocol_2() {
        // Python 2: cPickle.dumps((['ab', 'cd'], [True]), 2)
        let bytes = b"\x80\x02]q\x01(U\x02abq\x02U\x02cdq\x03e]q\x04\x88a\x86q\x05.";
        assert_eq!(read(bytes).unwrap(), pair_set());
        // A BINSTRING (4-byte length) as cPickle writes strings of 256 bytes and more.
        let bytes = b"\x80\x02]q\x00T\x03\x00\x00\x00xyzq\x01a\x85q\x02.";
        assert_eq!(
            read(bytes).unwrap(),
            Tuple(vec![List(vec![Bytes(b"xyz".to_vec())])])
        );
    }

    #[test]
    fn reads_python3_protocols_2_to_5() {
        // python3 -c 'import pickle; print(pickle.dumps(([b"ab", b"cd"], [True]), protocol=P))'
        let p2: &[u8] = b"\x80\x02]q\x00(c_codecs\nencode\nq\x01X\x02\x00\x00\x00abq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05h\x01X\x02\x00\x00\x00cdq\x06h\x03\x86q\x07Rq\x08e]q\t\x88a\x86q\n.";
        let p3: &[u8] = b"\x80\x03]q\x00(C\x02abq\x01C\x02cdq\x02e]q\x03\x88a\x86q\x04.";
        let p4: &[u8] = b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00]\x94(C\x02ab\x94C\x02cd\x94e]\x94\x88a\x86\x94.";
        let p5: &[u8] = b"\x80\x05\x95\x15\x00\x00\x00\x00\x00\x00\x00]\x94(C\x02ab\x94C\x02cd\x94e]\x94\x88a\x86\x94.";
        for bytes in [p2, p3, p4, p5] {
            assert_eq!(read(bytes).unwrap(), pair_set());
        }
    }

    #[test]
    fn reads_scalars_strings_dicts_and_memo_references() {
        // pickle.dumps({"k": [1, -2, 300, 70000, 2**40, 1.5, None, False]}, protocol=4)
        let bytes: &[u8] = b"\x80\x04\x95.\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01k\x94]\x94(K\x01J\xfe\xff\xff\xffM,\x01Jp\x11\x01\x00\x8a\x06\x00\x00\x00\x00\x00\x01G?\xf8\x00\x00\x00\x00\x00\x00N\x89es.";
        let list = List(vec![
            Int(1),
            Int(-2),
            Int(300),
            Int(70000),
            Int(1 << 40),
            Float(1.5),
            None,
            Bool(false),
        ]);
        assert_eq!(read(bytes).unwrap(), Dict(vec![(Str("k".into()), list)]));
        // b = b"xy"; pickle.dumps((b, b), protocol=4): the second is a memo reference.
        let bytes: &[u8] = b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00C\x02xy\x94h\x00\x86\x94.";
        assert_eq!(
            read(bytes).unwrap(),
            Tuple(vec![Bytes(b"xy".to_vec()), Bytes(b"xy".to_vec())])
        );
    }

    #[test]
    fn refuses_code_execution_opcodes_by_name() {
        // pickle.dumps(os.system, protocol=4) uses STACK_GLOBAL; protocol 0 uses GLOBAL/REDUCE.
        let stack_global: &[u8] = b"\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.";
        let err = read(stack_global).unwrap_err().to_string();
        assert!(
            err.contains("set.bin") && err.contains("STACK_GLOBAL") && err.contains("byte 28"),
            "{err}"
        );
        let global_reduce: &[u8] = b"cos\nsystem\n(S'echo hi'\ntR.";
        let err = read(global_reduce).unwrap_err().to_string();
        assert!(
            err.contains("GLOBAL (0x63) os.system") && err.contains("byte 0"),
            "{err}"
        );
        // The _codecs.encode pattern with anything but (str, 'latin1') is still refused.
        let other = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00utf8\x86R.";
        assert!(read(other).unwrap_err().to_string().contains("REDUCE"));
        for (op, name) in [
            (b'R', "REDUCE"),
            (b'b', "BUILD"),
            (b'i', "INST"),
            (b'o', "OBJ"),
            (0x81, "NEWOBJ"),
        ] {
            let err = read(&[0x80, 2, b'N', op, b'.']).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains("byte 3"), "{err}");
        }
    }

    #[test]
    fn doubling_by_dup_or_memo_is_refused_quickly() {
        // N, then 60 times DUP + TUPLE2: each step doubles the value (2^60 nodes), which Python
        // would share and this reader would copy. Found by `cargo fuzz run pickle` as a 298-byte
        // input of DUP, MEMOIZE and SETITEM that ran for 42 s.
        let mut dup = b"\x80\x02N".to_vec();
        for _ in 0..60 {
            dup.extend(b"2\x86");
        }
        dup.push(b'.');
        let started = std::time::Instant::now();
        let err = read(&dup).unwrap_err().to_string();
        assert!(err.contains("DUP and memo copies exceed 8 x"), "{err}");
        // The same through memo store and read: BINPUT 0, BINGET 0, TUPLE2.
        let mut memo = b"\x80\x02N".to_vec();
        for _ in 0..60 {
            memo.extend(b"q\x00h\x00\x86");
        }
        memo.push(b'.');
        let err = read(&memo).unwrap_err().to_string();
        assert!(err.contains("DUP and memo copies"), "{err}");
        assert!(started.elapsed().as_secs() < 5);
        // A few doublings stay well within the budget.
        let mut few = b"\x80\x02N".to_vec();
        for _ in 0..4 {
            few.extend(b"2\x86");
        }
        few.push(b'.');
        assert_eq!(weight(&read(&few).unwrap()), 31);
    }

    #[test]
    fn malformed_streams_are_errors_not_panics() {
        let cases: [&[u8]; 8] = [
            b"",
            b"\x80\x04",
            b"\x80\x04B\xff\xff\xff\xff",
            b"\x80\x04N",
            b"\x80\x04a.",
            b"\x80\x04Nh\x07.",
            b"\x80\x04]\x94h\x00\x86.",
            b"\x80\x04NN.",
        ];
        for bytes in cases {
            assert!(read(bytes).is_err(), "{bytes:?}");
        }
        let err = read(b"\x80\x04B\xff\xff\xff\xff").unwrap_err().to_string();
        assert!(
            err.contains("byte 2") && err.contains("4294967295 bytes"),
            "{err}"
        );
    }

    #[test]
    fn writer_output_is_what_python_writes_and_reads_back() {
        // Python: pickle.loads(b"\x80\x04(]\x94(C\x02abC\x02cde]\x88at.") == ([b"ab", b"cd"], [True])
        let written = write_pickle(&pair_set());
        assert_eq!(written, b"\x80\x04(](C\x02abC\x02cde](\x88et.");
        assert_eq!(read(&written).unwrap(), pair_set());
        let big = Tuple(vec![
            Bytes(vec![7; 300]),
            Str("é".repeat(200)),
            Int(-5),
            Int(i64::MIN),
            Float(-0.25),
            Dict(vec![(Int(1), None)]),
            List(vec![]),
        ]);
        assert_eq!(read(&write_pickle(&big)).unwrap(), big);
    }

    #[test]
    fn deep_nesting_is_refused_at_the_opcode_not_a_stack_overflow() {
        let n = 100_000;
        // EMPTY_LIST x n, then APPEND x (n - 1): each list goes into the one below it.
        let lists = [&b"\x80\x02"[..], &vec![b']'; n], &vec![b'a'; n - 1], b"."].concat();
        // One list wrapped in TUPLE1 x n.
        let tuples = [&b"\x80\x02]"[..], &vec![0x85u8; n], b"."].concat();
        // MARK ... TUPLE x n around an empty dict.
        let marks = [
            &b"\x80\x02"[..],
            &b"(".repeat(n),
            b"}",
            &b"t".repeat(n),
            b".",
        ]
        .concat();
        for (name, bytes) in [("lists", lists), ("tuples", tuples), ("marks", marks)] {
            let err = read(&bytes).unwrap_err().to_string();
            assert!(err.contains("nested more than 32"), "{name}: {err}");
        }
        // 32 containers deep is still read; a verification set is 2.
        let deep = [&b"\x80\x02]"[..], &[0x85u8; MAX_NESTING - 1], b"."].concat();
        let mut value = read(&deep).unwrap();
        let mut depth = 1;
        while let PickleValue::Tuple(mut items) = value {
            value = items.pop().unwrap();
            depth += 1;
        }
        assert_eq!((depth, value), (MAX_NESTING, PickleValue::List(vec![])));
    }
}
