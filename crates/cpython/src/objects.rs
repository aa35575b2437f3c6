//! Safe readers of Python objects in another address space.
//!
//! Everything here reads a CPython heap through [`Memory`] and treats every
//! byte it reads as untrusted: the target keeps running while we read, and a
//! pointer may be stale, dangling or simply garbage. So every length is
//! bounded (by the caller or by a hard cap here), every loop and recursion has
//! a limit, nothing read from the target is `unwrap`ped, and failures come
//! back as a typed [`ObjectError`].
//!
//! The API is a set of free functions generic over `M: Memory`, all taking the
//! interpreter's [`Layout`]:
//!
//! * types: [`type_of`], [`type_name`], [`type_name_of_type`];
//! * scalars: [`read_str`], [`read_str_prefix`], [`read_bytes`], [`read_int`],
//!   [`read_int_value`], [`read_float`], [`read_bool`], [`is_none`];
//! * containers: [`tuple_items`], [`list_items`], [`dict_items`],
//!   [`dict_get_str`];
//! * instances: [`instance_attrs`], [`get_attr`];
//! * display: [`render_value`], a short, safe `repr` for `dump --locals`.
//!
//! Strings are compared without hashing, so dictionary look-ups are linear
//! scans (bounded by [`MAX_DICT_SCAN`] entries).

use std::fmt;
use std::ops::ControlFlow;

use pyrometer_process::{Memory, MemoryError};

use crate::layout::{DictKeysModel, InstanceDictModel, Layout, LongModel};

/// Why an object could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectError {
    /// Reading the target's memory failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The object is not of the expected type.
    #[error("expected a Python {expected}, found {found}")]
    WrongType {
        /// The type that was expected (`"str"`, `"dict"`, …).
        expected: &'static str,
        /// The type name found in the target (possibly `"<unreadable>"`).
        found: String,
    },
    /// A length read from the target exceeds the caller's (or a hard) bound.
    #[error("{what} too large: {size} > {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The size found in the target.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// The object's contents are inconsistent.
    #[error("corrupt object: {0}")]
    Corrupt(&'static str),
    /// A NULL object pointer.
    #[error("NULL object pointer")]
    Null,
    /// The object is valid but stored in a way this reader does not handle.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// The result of object readers.
pub type Result<T, E = ObjectError> = std::result::Result<T, E>;

/// Default bound, in bytes or characters, for names (type names, identifiers).
pub const DEFAULT_NAME_MAX: usize = 4096;
/// Default bound on the number of 30-bit digits [`read_int`] accepts
/// (1024 digits are about 9,250 decimal digits).
pub const DEFAULT_MAX_INT_DIGITS: u64 = 1024;
/// Upper bound on what [`render_value`] returns, in characters.
pub const RENDER_MAX: usize = 200;
/// Hard cap on the items any container reader returns, whatever the caller asks.
pub const MAX_ITEMS: usize = 1 << 20;
/// Hard cap on the dictionary entries examined by one call (live or deleted).
pub const MAX_DICT_SCAN: u64 = 1 << 20;
/// Hard cap on the characters (or bytes) a string reader copies.
pub const MAX_STR_CHARS: usize = 1 << 24;

// Type flags (`Include/object.h`), identical on 3.8–3.15 where present.
/// 3.13+: instances keep their attribute values inline after the object.
const TPFLAGS_INLINE_VALUES: u64 = 1 << 2;
/// 3.11+: the dict (or values) pointer lives in the pre-header.
const TPFLAGS_MANAGED_DICT: u64 = 1 << 4;
const TPFLAGS_LONG_SUBCLASS: u64 = 1 << 24;
const TPFLAGS_LIST_SUBCLASS: u64 = 1 << 25;
const TPFLAGS_TUPLE_SUBCLASS: u64 = 1 << 26;
const TPFLAGS_BYTES_SUBCLASS: u64 = 1 << 27;
const TPFLAGS_UNICODE_SUBCLASS: u64 = 1 << 28;
const TPFLAGS_DICT_SUBCLASS: u64 = 1 << 29;

// Pre-header offsets of objects with `Py_TPFLAGS_MANAGED_DICT`. Not in the
// Layout (yet): they are the same on every 3.11+ GIL build.
/// `MANAGED_DICT_OFFSET` (3.11–3.13 `_PyObject_ManagedDictPointer`, 3.12
/// `_PyObject_DictOrValuesPointer`): `-3 * sizeof(PyObject *)`.
const MANAGED_DICT_OFFSET: i64 = -24;
/// `MANAGED_DICT_OFFSET` of free-threaded (`Py_GIL_DISABLED`) 3.13+ builds.
const MANAGED_DICT_OFFSET_FREE_THREADED: i64 = -8;
/// 3.11 `_PyObject_ValuesPointer`: `-4 * sizeof(PyObject *)`.
const MANAGED_VALUES_OFFSET_311: i64 = -32;
/// 3.13+ `PyDictValues`: `{uint8 capacity, size, embedded, valid}` then the
/// pointer-aligned `values[]` array.
const DICT_VALUES_HEADER_313: u64 = 8;

/// Bits per `int` digit (`PYLONG_BITS_IN_DIGIT`). Not in the Layout: 30 on
/// every 64-bit build pyrometer supports.
const LONG_DIGIT_BITS: u32 = 30;

// `PyASCIIObject.state` bit-field: interned:2, kind:3, compact:1, ascii:1,
// then ready:1 (≤3.11) or statically_allocated:1 (3.12+).
const STATE_KIND_SHIFT: u32 = 2;
const STATE_COMPACT: u32 = 1 << 5;
const STATE_ASCII: u32 = 1 << 6;
const STATE_READY_311: u32 = 1 << 7;

/// Highest user-space address on x86-64 with 5-level paging.
const USER_SPACE_END: u64 = 1 << 57;

// ---------------------------------------------------------------------------
// Small helpers

fn at(base: u64, off: u64) -> Result<u64> {
    base.checked_add(off)
        .ok_or(ObjectError::Corrupt("address overflow"))
}

fn at_signed(base: u64, off: i64) -> Result<u64> {
    base.checked_add_signed(off)
        .ok_or(ObjectError::Corrupt("address overflow"))
}

/// Check that `ptr` may be a `PyObject *`: non-NULL, aligned, user space.
fn check_obj(ptr: u64) -> Result<u64> {
    if ptr == 0 {
        Err(ObjectError::Null)
    } else if ptr & 7 != 0 {
        Err(ObjectError::Corrupt("misaligned object pointer"))
    } else if ptr >= USER_SPACE_END {
        Err(ObjectError::Corrupt("object pointer outside user space"))
    } else {
        Ok(ptr)
    }
}

/// A length read as a signed `Py_ssize_t` must be non-negative.
fn ssize<M: Memory + ?Sized>(mem: &M, addr: u64, what: &'static str) -> Result<u64> {
    let v = mem.read_i64(addr)?;
    u64::try_from(v).map_err(|_| ObjectError::Corrupt(what))
}

/// Read `n` pointers (already bounded by the caller).
fn read_ptrs<M: Memory + ?Sized>(mem: &M, addr: u64, n: usize) -> Result<Vec<u64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let bytes = n
        .checked_mul(8)
        .ok_or(ObjectError::Corrupt("length overflow"))?;
    let raw = mem.read_vec(addr, bytes)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

fn u64_at(buf: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = buf.get(off..off + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

/// Read a NUL-terminated C string of at most `max` bytes (excluding the NUL).
/// Reads never cross a page boundary needlessly, so a string that ends just
/// before an unmapped page is read fine. Invalid UTF-8 is replaced.
pub fn read_c_string<M: Memory + ?Sized>(mem: &M, addr: u64, max: usize) -> Result<String> {
    let (s, complete) = c_string_prefix(mem, addr, max)?;
    if complete {
        Ok(s)
    } else {
        Err(ObjectError::TooLarge {
            what: "C string",
            size: max as u64 + 1,
            max: max as u64,
        })
    }
}

/// The first `max` bytes of a C string, and whether its NUL was found.
fn c_string_prefix<M: Memory + ?Sized>(mem: &M, addr: u64, max: usize) -> Result<(String, bool)> {
    if addr == 0 {
        return Err(ObjectError::Null);
    }
    let max = max.min(MAX_STR_CHARS);
    let mut out: Vec<u8> = Vec::new();
    let mut cur = addr;
    // One more byte than `max` so that a string of exactly `max` bytes is
    // recognized by its NUL.
    while out.len() <= max {
        let page_end = (cur | 0xfff)
            .checked_add(1)
            .ok_or(ObjectError::Corrupt("address overflow"))?;
        let want = (max + 1 - out.len()).min(256) as u64;
        let mut chunk = (page_end - cur).min(want) as usize;
        // Pages are mapped whole in a live process, but other address spaces
        // (core files, synthetic images) may end anywhere: shrink on failure.
        let buf = loop {
            match mem.read_vec(cur, chunk) {
                Ok(b) => break b,
                Err(_) if chunk > 1 => chunk /= 2,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(nul) = buf.iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..nul]);
            return Ok((String::from_utf8_lossy(&out).into_owned(), true));
        }
        out.extend_from_slice(&buf);
        cur = at(cur, chunk as u64)?;
    }
    out.truncate(max);
    Ok((String::from_utf8_lossy(&out).into_owned(), false))
}

// ---------------------------------------------------------------------------
// Types

/// The type object (`ob_type`) of `obj`.
pub fn type_of<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<u64> {
    let obj = check_obj(obj)?;
    let tp = mem.read_u64(at(obj, layout.ob_type)?)?;
    check_obj(tp).map_err(|e| match e {
        ObjectError::Null => ObjectError::Corrupt("object without a type"),
        e => e,
    })
}

/// `tp_flags` of a type object.
pub fn type_flags<M: Memory + ?Sized>(mem: &M, layout: &Layout, tp: u64) -> Result<u64> {
    Ok(mem.read_u64(at(check_obj(tp)?, layout.type_tp_flags)?)?)
}

/// `tp_name` of a type object, at most `max` bytes. For heap types (classes)
/// this is the bare class name; static types may include their module.
pub fn type_name_of_type<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    tp: u64,
    max: usize,
) -> Result<String> {
    let name = mem.read_u64(at(check_obj(tp)?, layout.type_tp_name)?)?;
    if name == 0 {
        return Err(ObjectError::Corrupt("type without a name"));
    }
    read_c_string(mem, name, max)
}

/// The type name of `obj` (`tp_name`), at most [`DEFAULT_NAME_MAX`] bytes.
pub fn type_name<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<String> {
    type_name_of_type(mem, layout, type_of(mem, layout, obj)?, DEFAULT_NAME_MAX)
}

/// A type's name for error messages: never fails.
fn found_name<M: Memory + ?Sized>(mem: &M, layout: &Layout, tp: u64) -> String {
    match c_string_prefix_of_type(mem, layout, tp, 64) {
        Ok((s, true)) => s,
        Ok((s, false)) => format!("{s}..."),
        Err(_) => "<unreadable type>".to_string(),
    }
}

fn c_string_prefix_of_type<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    tp: u64,
    max: usize,
) -> Result<(String, bool)> {
    let name = mem.read_u64(at(check_obj(tp)?, layout.type_tp_name)?)?;
    c_string_prefix(mem, name, max)
}

/// Check that `obj`'s type has `flag` in `tp_flags` (subclasses included).
fn require_flag<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    flag: u64,
    expected: &'static str,
) -> Result<()> {
    let tp = type_of(mem, layout, obj)?;
    if type_flags(mem, layout, tp)? & flag == 0 {
        return Err(ObjectError::WrongType {
            expected,
            found: found_name(mem, layout, tp),
        });
    }
    Ok(())
}

/// Check that `obj`'s type is exactly named `name` (for types without a
/// subclass flag: float, bool, NoneType).
fn require_name<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    name: &'static str,
) -> Result<()> {
    let tp = type_of(mem, layout, obj)?;
    match c_string_prefix_of_type(mem, layout, tp, 64)? {
        (s, true) if s == name => Ok(()),
        (s, complete) => Err(ObjectError::WrongType {
            expected: name,
            found: if complete { s } else { format!("{s}...") },
        }),
    }
}

// ---------------------------------------------------------------------------
// str

/// What a `PyUnicodeObject` header says about its characters.
struct StrHeader {
    /// Length in code points.
    len: u64,
    /// Bytes per code point: 1, 2 or 4.
    kind: u64,
    /// Pure ASCII (must then be kind 1).
    ascii: bool,
    /// Address of the first code point.
    data: u64,
}

fn str_header<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<StrHeader> {
    require_flag(mem, layout, obj, TPFLAGS_UNICODE_SUBCLASS, "str")?;
    let len = ssize(mem, at(obj, layout.unicode_length)?, "negative str length")?;
    let state = mem.read_u32(at(obj, layout.unicode_state)?)?;
    let kind = u64::from((state >> STATE_KIND_SHIFT) & 7);
    if !matches!(kind, 1 | 2 | 4) {
        return Err(ObjectError::Corrupt("invalid str kind"));
    }
    let ascii = state & STATE_ASCII != 0;
    if ascii && kind != 1 {
        return Err(ObjectError::Corrupt("ASCII str with a wide kind"));
    }
    let data = if state & STATE_COMPACT != 0 {
        at(
            obj,
            if ascii {
                layout.unicode_ascii_data
            } else {
                layout.unicode_compact_data
            },
        )?
    } else {
        // A legacy string (made by a str subclass): `PyUnicodeObject.data.any`
        // follows the `PyCompactUnicodeObject` header.
        if layout.version.minor_pair() <= (3, 11) && state & STATE_READY_311 == 0 {
            return Err(ObjectError::Unsupported(
                "legacy str that is not ready (wstr only)",
            ));
        }
        let p = mem.read_u64(at(obj, layout.unicode_compact_data)?)?;
        if p == 0 {
            if len == 0 {
                return Ok(StrHeader {
                    len,
                    kind,
                    ascii,
                    data: 0,
                });
            }
            return Err(ObjectError::Corrupt("legacy str without data"));
        }
        p
    };
    Ok(StrHeader {
        len,
        kind,
        ascii,
        data,
    })
}

/// The first `n` code points (`n` ≤ `h.len`, already bounded).
fn str_code_points<M: Memory + ?Sized>(mem: &M, h: &StrHeader, n: u64) -> Result<Vec<u32>> {
    let n = n.min(h.len).min(MAX_STR_CHARS as u64) as usize;
    if n == 0 {
        return Ok(Vec::new());
    }
    let raw = mem.read_vec(h.data, n * h.kind as usize)?;
    let cps: Vec<u32> = match h.kind {
        1 => raw.iter().map(|b| u32::from(*b)).collect(),
        2 => raw
            .chunks_exact(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        _ => raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    };
    if h.ascii && cps.iter().any(|c| *c >= 0x80) {
        return Err(ObjectError::Corrupt("non-ASCII byte in an ASCII str"));
    }
    if cps.iter().any(|c| *c > 0x10_ffff) {
        return Err(ObjectError::Corrupt("code point beyond U+10FFFF"));
    }
    Ok(cps)
}

/// Code points to a `String`; lone surrogates become U+FFFD.
fn cps_to_string(cps: &[u32]) -> String {
    cps.iter()
        .map(|c| char::from_u32(*c).unwrap_or('\u{fffd}'))
        .collect()
}

/// The length of a `str`, in code points.
pub fn str_len<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<u64> {
    Ok(str_header(mem, layout, obj)?.len)
}

/// Read a `str` (or subclass) of at most `max_chars` code points; longer
/// strings are [`ObjectError::TooLarge`]. Handles compact ASCII, compact
/// Latin-1/UCS-2/UCS-4 and legacy (non-compact) strings. Lone surrogates
/// become U+FFFD.
pub fn read_str<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    max_chars: usize,
) -> Result<String> {
    let h = str_header(mem, layout, obj)?;
    let max = max_chars.min(MAX_STR_CHARS) as u64;
    if h.len > max {
        return Err(ObjectError::TooLarge {
            what: "str",
            size: h.len,
            max,
        });
    }
    Ok(cps_to_string(&str_code_points(mem, &h, h.len)?))
}

/// The first `max_chars` code points of a `str`, and its full length.
pub fn read_str_prefix<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    max_chars: usize,
) -> Result<(String, u64)> {
    let h = str_header(mem, layout, obj)?;
    let cps = str_code_points(mem, &h, max_chars as u64)?;
    Ok((cps_to_string(&cps), h.len))
}

/// Whether `obj` is a `str` equal to `s` (of `want` code points).
/// Non-strings are simply unequal. `str_types` caches type objects already
/// known to be str types, so that a key of another length costs one read.
fn str_eq<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    s: &str,
    want: u64,
    str_types: &mut Vec<u64>,
) -> Result<bool> {
    let obj = check_obj(obj)?;
    let head = layout.ob_type.max(layout.unicode_length) + 8;
    // Fast path: type and length in one read (a non-str smaller than a str
    // header near the end of a mapping falls back to the checked path).
    if let Ok(raw) = mem.read_vec(obj, head as usize) {
        let tp = u64_at(&raw, layout.ob_type as usize);
        if !str_types.contains(&tp) {
            check_obj(tp)?;
            if type_flags(mem, layout, tp)? & TPFLAGS_UNICODE_SUBCLASS == 0 {
                return Ok(false);
            }
            if str_types.len() < 4 {
                str_types.push(tp);
            }
        }
        if u64_at(&raw, layout.unicode_length as usize) != want {
            return Ok(false);
        }
    }
    let h = match str_header(mem, layout, obj) {
        Ok(h) => h,
        Err(ObjectError::WrongType { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    if h.len != want {
        return Ok(false);
    }
    let cps = str_code_points(mem, &h, want)?;
    Ok(cps.iter().copied().eq(s.chars().map(u32::from)))
}

// ---------------------------------------------------------------------------
// bytes

fn bytes_header<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<u64> {
    require_flag(mem, layout, obj, TPFLAGS_BYTES_SUBCLASS, "bytes")?;
    ssize(mem, at(obj, layout.bytes_size)?, "negative bytes length")
}

/// Read a `bytes` object of at most `max_len` bytes; longer is
/// [`ObjectError::TooLarge`].
pub fn read_bytes<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    max_len: usize,
) -> Result<Vec<u8>> {
    let len = bytes_header(mem, layout, obj)?;
    let max = max_len.min(MAX_STR_CHARS) as u64;
    if len > max {
        return Err(ObjectError::TooLarge {
            what: "bytes",
            size: len,
            max,
        });
    }
    Ok(mem.read_vec(at(obj, layout.bytes_sval)?, len as usize)?)
}

/// The first `max_len` bytes of a `bytes` object, and its full length.
pub fn read_bytes_prefix<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    max_len: usize,
) -> Result<(Vec<u8>, u64)> {
    let len = bytes_header(mem, layout, obj)?;
    let n = len.min(max_len.min(MAX_STR_CHARS) as u64) as usize;
    Ok((mem.read_vec(at(obj, layout.bytes_sval)?, n)?, len))
}

// ---------------------------------------------------------------------------
// int, bool, float, None

/// The value of a Python `int`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PyInt {
    /// It fits an `i64`.
    Small(i64),
    /// It does not: its decimal text, with a leading `-` when negative.
    Big(String),
}

impl PyInt {
    /// The value when it fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            PyInt::Small(v) => Some(*v),
            PyInt::Big(_) => None,
        }
    }
}

impl fmt::Display for PyInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyInt::Small(v) => write!(f, "{v}"),
            PyInt::Big(s) => f.write_str(s),
        }
    }
}

/// Sign and 30-bit digits (least significant first) of an `int`.
fn int_parts<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    max_digits: u64,
) -> Result<(bool, Vec<u32>)> {
    require_flag(mem, layout, obj, TPFLAGS_LONG_SUBCLASS, "int")?;
    let (negative, ndigits) = match layout.long_model {
        LongModel::SignedSize { ob_size } => {
            let size = mem.read_i64(at(obj, ob_size)?)?;
            (size < 0, size.unsigned_abs())
        }
        LongModel::Tagged { lv_tag } => {
            let tag = mem.read_u64(at(obj, lv_tag)?)?;
            match tag & 3 {
                0 => (false, tag >> 3),
                1 => return Ok((false, Vec::new())),
                2 => (true, tag >> 3),
                _ => return Err(ObjectError::Corrupt("invalid int sign")),
            }
        }
    };
    let max = max_digits.min(MAX_STR_CHARS as u64);
    if ndigits > max {
        return Err(ObjectError::TooLarge {
            what: "int",
            size: ndigits,
            max,
        });
    }
    let raw = mem.read_vec(at(obj, layout.long_digit)?, ndigits as usize * 4)?;
    let digits: Vec<u32> = raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if digits.iter().any(|d| *d >> LONG_DIGIT_BITS != 0) {
        return Err(ObjectError::Corrupt("int digit out of range"));
    }
    Ok((negative, digits))
}

fn int_value(negative: bool, digits: &[u32]) -> PyInt {
    let significant = digits.iter().rposition(|d| *d != 0).map_or(0, |i| i + 1);
    let digits = &digits[..significant];
    // Three 30-bit digits hold 90 bits: enough to decide whether it fits i64.
    if digits.len() <= 3 {
        let mut mag: u128 = 0;
        for (i, d) in digits.iter().enumerate() {
            mag |= u128::from(*d) << (LONG_DIGIT_BITS as usize * i);
        }
        let v = if negative {
            0i128 - mag as i128
        } else {
            mag as i128
        };
        if let Ok(v) = i64::try_from(v) {
            return PyInt::Small(v);
        }
    }
    PyInt::Big(digits_to_decimal(negative, digits))
}

/// Base 2^30 digits (least significant first) to decimal text.
fn digits_to_decimal(negative: bool, digits: &[u32]) -> String {
    const BASE: u64 = 1_000_000_000;
    // Little-endian base 10^9 limbs.
    let mut out: Vec<u64> = Vec::with_capacity(digits.len() * 34 / 30 + 1);
    for d in digits.iter().rev() {
        let mut carry = u64::from(*d);
        for limb in out.iter_mut() {
            let z = (*limb << LONG_DIGIT_BITS) | carry;
            carry = z / BASE;
            *limb = z - carry * BASE;
        }
        while carry != 0 {
            out.push(carry % BASE);
            carry /= BASE;
        }
    }
    let mut s = String::new();
    if negative && !out.is_empty() {
        s.push('-');
    }
    match out.split_last() {
        None => s.push('0'),
        Some((top, rest)) => {
            s.push_str(&top.to_string());
            for limb in rest.iter().rev() {
                s.push_str(&format!("{limb:09}"));
            }
        }
    }
    s
}

/// Read an `int` (or subclass, `bool` included) that fits an `i64`; larger
/// values are [`ObjectError::TooLarge`] (use [`read_int_value`] for those).
pub fn read_int<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<i64> {
    let (negative, digits) = int_parts(mem, layout, obj, 3)?;
    match int_value(negative, &digits) {
        PyInt::Small(v) => Ok(v),
        PyInt::Big(_) => Err(ObjectError::TooLarge {
            what: "int for i64",
            size: digits.len() as u64 * u64::from(LONG_DIGIT_BITS),
            max: 63,
        }),
    }
}

/// Read an `int` of any size up to `max_digits` 30-bit digits (see
/// [`DEFAULT_MAX_INT_DIGITS`]): an `i64` when it fits, else its decimal text.
pub fn read_int_value<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    max_digits: u64,
) -> Result<PyInt> {
    let (negative, digits) = int_parts(mem, layout, obj, max_digits)?;
    Ok(int_value(negative, &digits))
}

/// Read a `bool` (exactly the type named `bool`).
pub fn read_bool<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<bool> {
    require_name(mem, layout, obj, "bool")?;
    let (_, digits) = int_parts(mem, layout, obj, 2)?;
    Ok(digits.iter().any(|d| *d != 0))
}

/// Read a `float` (exactly the type named `float`).
pub fn read_float<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<f64> {
    require_name(mem, layout, obj, "float")?;
    Ok(f64::from_bits(mem.read_u64(at(obj, layout.float_fval)?)?))
}

/// Whether `obj` is `None` (its type is named `NoneType`).
pub fn is_none<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<bool> {
    let tp = type_of(mem, layout, obj)?;
    let (name, complete) = c_string_prefix_of_type(mem, layout, tp, 16)?;
    Ok(complete && name == "NoneType")
}

/// Python's `repr(float)`: the shortest round-tripping digits, in exponent
/// notation when the decimal exponent is < -4 or ≥ 16.
pub fn float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits: "-1.2345e-5".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let decpt = exp + 1;
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4 < decpt && decpt <= 16) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        ));
    } else if decpt <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat(decpt.unsigned_abs() as usize));
        out.push_str(&digits);
    } else if decpt as usize >= digits.len() {
        out.push_str(&digits);
        out.push_str(&"0".repeat(decpt as usize - digits.len()));
        out.push_str(".0");
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
    out
}

// ---------------------------------------------------------------------------
// tuple, list

/// The length of a `tuple`.
pub fn tuple_len<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<u64> {
    require_flag(mem, layout, obj, TPFLAGS_TUPLE_SUBCLASS, "tuple")?;
    ssize(mem, at(obj, layout.tuple_size)?, "negative tuple length")
}

/// The first `max` item pointers of a `tuple` (fewer if it is shorter; see
/// [`tuple_len`] for the full length). Items may be NULL in a tuple under
/// construction.
pub fn tuple_items<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    max: usize,
) -> Result<Vec<u64>> {
    let len = tuple_len(mem, layout, obj)?;
    let n = len.min(max.min(MAX_ITEMS) as u64) as usize;
    read_ptrs(mem, at(obj, layout.tuple_item)?, n)
}

/// The length of a `list`.
pub fn list_len<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<u64> {
    require_flag(mem, layout, obj, TPFLAGS_LIST_SUBCLASS, "list")?;
    ssize(mem, at(obj, layout.list_size)?, "negative list length")
}

/// The first `max` item pointers of a `list` (fewer if it is shorter; see
/// [`list_len`] for the full length).
pub fn list_items<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    max: usize,
) -> Result<Vec<u64>> {
    let len = list_len(mem, layout, obj)?;
    let n = len.min(max.min(MAX_ITEMS) as u64) as usize;
    if n == 0 {
        return Ok(Vec::new());
    }
    let items = mem.read_u64(at(obj, layout.list_item)?)?;
    if items == 0 {
        return Err(ObjectError::Corrupt("non-empty list without items"));
    }
    read_ptrs(mem, items, n)
}

// ---------------------------------------------------------------------------
// dict

/// Where a dict keys object keeps its entries.
#[derive(Debug, Clone, Copy)]
struct KeysTable {
    entries: u64,
    entry_size: u64,
    key_off: u64,
    value_off: u64,
    nentries: u64,
}

/// Where the values of a split table live.
#[derive(Debug, Clone, Copy)]
enum Values {
    /// A combined table: values are in the entries.
    InEntries,
    /// ≤3.10: `PyObject **ma_values`, indexed like the entries, in entry order.
    Flat(u64),
    /// 3.11/3.12: `PyDictValues *` preceded by a byte prefix holding the
    /// insertion order: `[-1]` prefix size, `[-2]` count, `[-3 - i]` order.
    Prefixed(u64),
    /// 3.13+: `PyDictValues {capacity, size, embedded, valid; values[capacity]}`
    /// followed by `size` order bytes.
    Header(u64),
}

fn values_of(layout: &Layout, ptr: u64) -> Values {
    if ptr == 0 {
        return Values::InEntries;
    }
    match (layout.dict_keys_model, layout.instance_dict) {
        (DictKeysModel::Sized { .. }, _) => Values::Flat(ptr),
        (_, InstanceDictModel::InlineValues313) => Values::Header(ptr),
        _ => Values::Prefixed(ptr),
    }
}

fn keys_table<M: Memory + ?Sized>(mem: &M, layout: &Layout, keys: u64) -> Result<KeysTable> {
    if keys == 0 {
        return Err(ObjectError::Corrupt("dict without keys"));
    }
    if keys & 7 != 0 || keys >= USER_SPACE_END {
        return Err(ObjectError::Corrupt("invalid dict keys pointer"));
    }
    match layout.dict_keys_model {
        DictKeysModel::Sized {
            dk_size,
            dk_nentries,
            dk_indices,
        } => {
            let size = ssize(mem, at(keys, dk_size)?, "negative dict size")?;
            // The shared empty keys (`Py_EMPTY_KEYS`) have size 1.
            if !size.is_power_of_two() || size > 1 << 40 {
                return Err(ObjectError::Corrupt("invalid dict size"));
            }
            let index_bytes = if size <= 0xff {
                1
            } else if size <= 0xffff {
                2
            } else if size <= 0xffff_ffff {
                4
            } else {
                8
            };
            let nentries = ssize(mem, at(keys, dk_nentries)?, "negative dict entry count")?;
            if nentries > size * 2 / 3 {
                return Err(ObjectError::Corrupt("more dict entries than slots"));
            }
            Ok(KeysTable {
                entries: at(at(keys, dk_indices)?, size * index_bytes)?,
                entry_size: 24,
                key_off: 8,
                value_off: 16,
                nentries,
            })
        }
        DictKeysModel::Log2 {
            dk_log2_size,
            dk_log2_index_bytes,
            dk_kind,
            dk_nentries,
            dk_indices,
        } => {
            let log2_size = mem.read_u8(at(keys, dk_log2_size)?)?;
            let log2_index_bytes = mem.read_u8(at(keys, dk_log2_index_bytes)?)?;
            let kind = mem.read_u8(at(keys, dk_kind)?)?;
            // The shared empty keys have log2 size 0.
            if log2_size > 40 {
                return Err(ObjectError::Corrupt("invalid dict size"));
            }
            let width_log2 = match log2_size {
                0..=7 => 0,
                8..=15 => 1,
                16..=31 => 2,
                _ => 3,
            };
            if log2_index_bytes != log2_size + width_log2 {
                return Err(ObjectError::Corrupt("inconsistent dict index size"));
            }
            let (entry_size, key_off, value_off) = match kind {
                0 => (24, 8, 16),
                1 | 2 => (16, 0, 8),
                _ => return Err(ObjectError::Corrupt("invalid dict keys kind")),
            };
            let size = 1u64 << log2_size;
            let nentries = ssize(mem, at(keys, dk_nentries)?, "negative dict entry count")?;
            if nentries > size * 2 / 3 {
                return Err(ObjectError::Corrupt("more dict entries than slots"));
            }
            Ok(KeysTable {
                entries: at(at(keys, dk_indices)?, 1u64 << log2_index_bytes)?,
                entry_size,
                key_off,
                value_off,
                nentries,
            })
        }
    }
}

/// Entry indices of a split table's values, in insertion order, and the
/// address of its `values[0]`.
fn split_order<M: Memory + ?Sized>(mem: &M, values: Values) -> Result<(u64, Vec<u8>)> {
    match values {
        Values::Prefixed(v) => {
            let before = |n: u64| {
                v.checked_sub(n)
                    .ok_or(ObjectError::Corrupt("address underflow"))
            };
            let prefix = u64::from(mem.read_u8(before(1)?)?);
            let size = u64::from(mem.read_u8(before(2)?)?);
            if prefix < 2 || size + 2 > prefix {
                return Err(ObjectError::Corrupt("invalid dict values prefix"));
            }
            let raw = mem.read_vec(before(prefix)?, prefix as usize)?;
            let p = prefix as usize;
            let order = (0..size as usize).map(|i| raw[p - 3 - i]).collect();
            Ok((v, order))
        }
        Values::Header(v) => {
            let mut hdr = [0u8; 4];
            mem.read(v, &mut hdr)?;
            let (capacity, size) = (u64::from(hdr[0]), u64::from(hdr[1]));
            if size > capacity {
                return Err(ObjectError::Corrupt("dict values larger than capacity"));
            }
            let values = at(v, DICT_VALUES_HEADER_313)?;
            let order = mem.read_vec(at(values, capacity * 8)?, size as usize)?;
            Ok((values, order))
        }
        Values::InEntries | Values::Flat(_) => {
            Err(ObjectError::Corrupt("no insertion order for these values"))
        }
    }
}

/// Call `f(key, value)` for each live item, in insertion order, examining at
/// most [`MAX_DICT_SCAN`] entries.
fn visit_table<M, F>(mem: &M, table: &KeysTable, values: Values, mut f: F) -> Result<()>
where
    M: Memory + ?Sized,
    F: FnMut(u64, u64) -> Result<ControlFlow<()>>,
{
    const CHUNK: u64 = 128;
    match values {
        Values::InEntries | Values::Flat(_) => {
            let n = table.nentries.min(MAX_DICT_SCAN);
            let mut start = 0;
            while start < n {
                let count = (n - start).min(CHUNK);
                let addr = at(table.entries, start * table.entry_size)?;
                let raw = mem.read_vec(addr, (count * table.entry_size) as usize)?;
                let flat = match values {
                    Values::Flat(v) => Some(read_ptrs(mem, at(v, start * 8)?, count as usize)?),
                    _ => None,
                };
                for i in 0..count as usize {
                    let e = i * table.entry_size as usize;
                    let key = u64_at(&raw, e + table.key_off as usize);
                    let value = match &flat {
                        Some(vals) => vals.get(i).copied().unwrap_or(0),
                        None => u64_at(&raw, e + table.value_off as usize),
                    };
                    if key != 0 && value != 0 && f(key, value)?.is_break() {
                        return Ok(());
                    }
                }
                start += count;
            }
            Ok(())
        }
        Values::Prefixed(_) | Values::Header(_) => {
            let (vals, order) = split_order(mem, values)?;
            for ix in order {
                let ix = u64::from(ix);
                if ix >= table.nentries {
                    return Err(ObjectError::Corrupt("split dict index out of range"));
                }
                let entry = at(table.entries, ix * table.entry_size)?;
                let key = mem.read_u64(at(entry, table.key_off)?)?;
                let value = mem.read_u64(at(vals, ix * 8)?)?;
                if key != 0 && value != 0 && f(key, value)?.is_break() {
                    return Ok(());
                }
            }
            Ok(())
        }
    }
}

fn visit_dict<M, F>(mem: &M, layout: &Layout, dict: u64, f: F) -> Result<()>
where
    M: Memory + ?Sized,
    F: FnMut(u64, u64) -> Result<ControlFlow<()>>,
{
    require_flag(mem, layout, dict, TPFLAGS_DICT_SUBCLASS, "dict")?;
    let keys = mem.read_u64(at(dict, layout.dict_keys)?)?;
    let values = mem.read_u64(at(dict, layout.dict_values)?)?;
    let table = keys_table(mem, layout, keys)?;
    visit_table(mem, &table, values_of(layout, values), f)
}

fn collect_items(
    max: usize,
    visit: impl FnOnce(&mut dyn FnMut(u64, u64) -> Result<ControlFlow<()>>) -> Result<()>,
) -> Result<Vec<(u64, u64)>> {
    let max = max.min(MAX_ITEMS);
    let mut out = Vec::new();
    if max == 0 {
        return Ok(out);
    }
    visit(&mut |k, v| {
        out.push((k, v));
        Ok(if out.len() >= max {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    Ok(out)
}

/// `ma_used`: the number of items of a `dict`.
pub fn dict_len<M: Memory + ?Sized>(mem: &M, layout: &Layout, dict: u64) -> Result<u64> {
    require_flag(mem, layout, dict, TPFLAGS_DICT_SUBCLASS, "dict")?;
    ssize(mem, at(dict, layout.dict_used)?, "negative dict length")
}

/// The first `max` `(key, value)` pointers of a `dict`, in insertion order,
/// for every table kind (combined, split, unicode-keyed). Deleted entries are
/// skipped.
pub fn dict_items<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    dict: u64,
    max: usize,
) -> Result<Vec<(u64, u64)>> {
    collect_items(max, |f| visit_dict(mem, layout, dict, f))
}

fn find_str<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    key: &str,
    visit: impl FnOnce(&mut dyn FnMut(u64, u64) -> Result<ControlFlow<()>>) -> Result<()>,
) -> Result<Option<u64>> {
    let mut found = None;
    let want = key.chars().count() as u64;
    let mut str_types = Vec::new();
    visit(&mut |k, v| {
        if str_eq(mem, layout, k, key, want, &mut str_types)? {
            found = Some(v);
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(found)
}

/// The value of the `str` key `key` in `dict`, by comparing keys (no
/// hashing). Non-string keys are skipped.
pub fn dict_get_str<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    dict: u64,
    key: &str,
) -> Result<Option<u64>> {
    find_str(mem, layout, key, |f| visit_dict(mem, layout, dict, f))
}

// ---------------------------------------------------------------------------
// instance attributes

/// Where an instance's attributes are.
enum AttrStore {
    /// No dict and no values (yet).
    Empty,
    /// A dict object.
    Dict(u64),
    /// Split values with the type's cached keys (3.11+).
    Values { keys: u64, values: Values },
}

fn cached_keys<M: Memory + ?Sized>(mem: &M, layout: &Layout, tp: u64) -> Result<u64> {
    let off = layout
        .heap_type_cached_keys
        .ok_or(ObjectError::Unsupported("layout lacks ht_cached_keys"))?;
    let keys = mem.read_u64(at(tp, off)?)?;
    if keys == 0 {
        return Err(ObjectError::Corrupt("instance values without cached keys"));
    }
    Ok(keys)
}

fn attr_store<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<AttrStore> {
    let tp = type_of(mem, layout, obj)?;
    let flags = type_flags(mem, layout, tp)?;
    let managed = flags & TPFLAGS_MANAGED_DICT != 0;
    let nonzero = |p: u64| if p == 0 { None } else { Some(p) };
    match layout.instance_dict {
        InstanceDictModel::Managed311 if managed => {
            if let Some(d) = nonzero(mem.read_u64(at_signed(obj, MANAGED_DICT_OFFSET)?)?) {
                return Ok(AttrStore::Dict(d));
            }
            match nonzero(mem.read_u64(at_signed(obj, MANAGED_VALUES_OFFSET_311)?)?) {
                Some(v) => Ok(AttrStore::Values {
                    keys: cached_keys(mem, layout, tp)?,
                    values: Values::Prefixed(v),
                }),
                None => Ok(AttrStore::Empty),
            }
        }
        InstanceDictModel::DictOrValues312 if managed => {
            let raw = mem.read_u64(at_signed(obj, MANAGED_DICT_OFFSET)?)?;
            if raw & 1 != 0 {
                // `_PyDictOrValues_GetValues`: the values pointer minus one.
                Ok(AttrStore::Values {
                    keys: cached_keys(mem, layout, tp)?,
                    values: Values::Prefixed(at(raw, 1)?),
                })
            } else if raw != 0 {
                Ok(AttrStore::Dict(raw))
            } else {
                Ok(AttrStore::Empty)
            }
        }
        InstanceDictModel::InlineValues313 if managed => {
            let off = if layout.free_threaded {
                MANAGED_DICT_OFFSET_FREE_THREADED
            } else {
                MANAGED_DICT_OFFSET
            };
            if let Some(d) = nonzero(mem.read_u64(at_signed(obj, off)?)?) {
                return Ok(AttrStore::Dict(d));
            }
            if flags & TPFLAGS_INLINE_VALUES == 0 {
                return Ok(AttrStore::Empty);
            }
            let basicsize = ssize(
                mem,
                at(tp, layout.type_tp_basicsize)?,
                "negative tp_basicsize",
            )?;
            if basicsize > 1 << 20 {
                return Err(ObjectError::Corrupt("implausible tp_basicsize"));
            }
            let values = at(obj, basicsize)?;
            // `PyDictValues.valid` is cleared when the values moved to a dict.
            if mem.read_u8(at(values, 3)?)? == 0 {
                return Ok(AttrStore::Empty);
            }
            Ok(AttrStore::Values {
                keys: cached_keys(mem, layout, tp)?,
                values: Values::Header(values),
            })
        }
        _ => {
            let off = mem.read_i64(at(tp, layout.type_tp_dictoffset)?)?;
            if off == 0 {
                return Ok(AttrStore::Empty);
            }
            if off < 0 {
                return Err(ObjectError::Unsupported(
                    "negative tp_dictoffset (variable-size instance)",
                ));
            }
            if off > 1 << 20 {
                return Err(ObjectError::Corrupt("implausible tp_dictoffset"));
            }
            match nonzero(mem.read_u64(at(obj, off as u64)?)?) {
                Some(d) => Ok(AttrStore::Dict(d)),
                None => Ok(AttrStore::Empty),
            }
        }
    }
}

fn visit_attrs<M, F>(mem: &M, layout: &Layout, obj: u64, f: F) -> Result<()>
where
    M: Memory + ?Sized,
    F: FnMut(u64, u64) -> Result<ControlFlow<()>>,
{
    match attr_store(mem, layout, obj)? {
        AttrStore::Empty => Ok(()),
        AttrStore::Dict(d) => visit_dict(mem, layout, d, f),
        AttrStore::Values { keys, values } => {
            let table = keys_table(mem, layout, keys)?;
            visit_table(mem, &table, values, f)
        }
    }
}

/// The first `max` `(name, value)` pointers of an instance's attributes
/// (its `__dict__`, whether materialized or not), in insertion order.
pub fn instance_attrs<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    max: usize,
) -> Result<Vec<(u64, u64)>> {
    collect_items(max, |f| visit_attrs(mem, layout, obj, f))
}

/// The instance attribute `name` of `obj` (from its `__dict__` or inline
/// values; class attributes, slots and properties are not looked up).
pub fn get_attr<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    name: &str,
) -> Result<Option<u64>> {
    find_str(mem, layout, name, |f| visit_attrs(mem, layout, obj, f))
}

/// `PyMemberDef`: `name` (a C string), `type` (an `int`), `offset`.
const MEMBER_DEF_SIZE: u64 = 40;
const MEMBER_DEF_TYPE: u64 = 8;
const MEMBER_DEF_OFFSET: u64 = 16;
/// `T_OBJECT` and `T_OBJECT_EX`: the member types of `__slots__`.
const MEMBER_TYPES_OBJECT: [u32; 2] = [6, 16];
/// Bases searched and members per type read, for [`get_slot`].
const MAX_SLOT_BASES: usize = 8;
const MAX_MEMBERS: u64 = 128;
/// Largest slot offset accepted inside an instance.
const MAX_SLOT_OFFSET: u64 = 1 << 16;

/// The value of the `__slots__` member `name` of `obj`, found through its
/// type's `tp_members` (and its bases'); `None` when no such slot exists or
/// it is unset.
pub fn get_slot<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    name: &str,
) -> Result<Option<u64>> {
    let mut tp = type_of(mem, layout, obj)?;
    for _ in 0..MAX_SLOT_BASES {
        let members = mem.read_u64(at(tp, layout.type_tp_members)?)?;
        if members != 0 {
            for i in 0..MAX_MEMBERS {
                let def = at(members, i * MEMBER_DEF_SIZE)?;
                let name_ptr = mem.read_u64(def)?;
                if name_ptr == 0 {
                    break;
                }
                if read_c_string(mem, name_ptr, 64).ok().as_deref() != Some(name) {
                    continue;
                }
                let ty = mem.read_u32(at(def, MEMBER_DEF_TYPE)?)?;
                let offset = mem.read_u64(at(def, MEMBER_DEF_OFFSET)?)?;
                if !MEMBER_TYPES_OBJECT.contains(&ty) || offset > MAX_SLOT_OFFSET {
                    return Err(ObjectError::Corrupt("implausible slot member"));
                }
                let v = mem.read_u64(at(obj, offset)?)?;
                return Ok((v != 0).then_some(v));
            }
        }
        tp = mem.read_u64(at(tp, layout.type_tp_base)?)?;
        if tp == 0 {
            break;
        }
        check_obj(tp)?;
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// render_value

/// Deepest nesting level (0 = the value itself) whose containers show their
/// items; deeper ones show as `[...]`.
const RENDER_MAX_DEPTH: usize = 2;
/// Items shown per container.
const RENDER_MAX_ITEMS: usize = 10;
/// Smallest budget honoured.
const RENDER_MIN: usize = 8;

/// A short, safe `repr` of `obj` of at most `min(budget, RENDER_MAX)`
/// characters: ints, floats (Python style), str (quoted and escaped like
/// `repr`), bytes, None, True/False, the first items of tuples, lists and
/// dicts (nested at most [`RENDER_MAX_DEPTH`] deep), and
/// `<TYPENAME at 0x…>` for anything else. Truncation is shown by `...`.
/// Never fails: unreadable objects render as `<unreadable at 0x…>`.
pub fn render_value<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    budget: usize,
) -> String {
    let limit = budget.clamp(RENDER_MIN, RENDER_MAX);
    render(mem, layout, obj, 0, limit)
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Cut `s` to `limit` characters, marking the cut with `...`.
fn fit(s: String, limit: usize) -> String {
    if char_len(&s) <= limit {
        return s;
    }
    let mut out: String = s.chars().take(limit.saturating_sub(3)).collect();
    out.push_str(&"..."[..limit.min(3)]);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bytes,
    Int,
    Bool,
    Float,
    NoneType,
    Tuple,
    List,
    Dict,
    Other,
}

fn classify<M: Memory + ?Sized>(mem: &M, layout: &Layout, obj: u64) -> Result<(Kind, String)> {
    let tp = type_of(mem, layout, obj)?;
    let flags = type_flags(mem, layout, tp)?;
    let (name, complete) = c_string_prefix_of_type(mem, layout, tp, 64)?;
    let name = if complete { name } else { format!("{name}...") };
    let kind = if flags & TPFLAGS_UNICODE_SUBCLASS != 0 {
        Kind::Str
    } else if flags & TPFLAGS_BYTES_SUBCLASS != 0 {
        Kind::Bytes
    } else if flags & TPFLAGS_LONG_SUBCLASS != 0 {
        if name == "bool" {
            Kind::Bool
        } else {
            Kind::Int
        }
    } else if flags & TPFLAGS_TUPLE_SUBCLASS != 0 {
        Kind::Tuple
    } else if flags & TPFLAGS_LIST_SUBCLASS != 0 {
        Kind::List
    } else if flags & TPFLAGS_DICT_SUBCLASS != 0 {
        Kind::Dict
    } else if name == "float" {
        Kind::Float
    } else if name == "NoneType" {
        Kind::NoneType
    } else {
        Kind::Other
    };
    Ok((kind, name))
}

fn render<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    depth: usize,
    limit: usize,
) -> String {
    let s = match render_inner(mem, layout, obj, depth, limit) {
        Ok(s) => s,
        Err(ObjectError::Null) => "<NULL>".to_string(),
        Err(_) => format!("<unreadable at {obj:#x}>"),
    };
    fit(s, limit)
}

fn render_inner<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    depth: usize,
    limit: usize,
) -> Result<String> {
    let (kind, name) = classify(mem, layout, obj)?;
    Ok(match kind {
        Kind::NoneType => "None".into(),
        Kind::Bool => if read_bool(mem, layout, obj)? {
            "True"
        } else {
            "False"
        }
        .into(),
        Kind::Int => {
            // 64 digits are ~580 decimal digits: more than any budget shows.
            match read_int_value(mem, layout, obj, 64) {
                Ok(v) => v.to_string(),
                Err(ObjectError::TooLarge { size, .. }) => {
                    format!("<int of {size} digits>")
                }
                Err(e) => return Err(e),
            }
        }
        Kind::Float => float_repr(read_float(mem, layout, obj)?),
        Kind::Str => {
            let h = str_header(mem, layout, obj)?;
            let cps = str_code_points(mem, &h, limit as u64)?;
            quote_repr(&cps, h.len > cps.len() as u64, "", limit, escape_char)
        }
        Kind::Bytes => {
            let (b, len) = read_bytes_prefix(mem, layout, obj, limit)?;
            let cps: Vec<u32> = b.iter().map(|c| u32::from(*c)).collect();
            quote_repr(&cps, len > b.len() as u64, "b", limit, escape_byte)
        }
        Kind::Tuple => {
            let len = tuple_len(mem, layout, obj)?;
            let n = if depth > RENDER_MAX_DEPTH {
                0
            } else {
                RENDER_MAX_ITEMS
            };
            let items = tuple_items(mem, layout, obj, n)?;
            let pairs: Vec<(Option<u64>, u64)> = items.iter().map(|v| (None, *v)).collect();
            render_container(mem, layout, ("(", ")"), &pairs, len, true, depth, limit)
        }
        Kind::List => {
            let len = list_len(mem, layout, obj)?;
            let n = if depth > RENDER_MAX_DEPTH {
                0
            } else {
                RENDER_MAX_ITEMS
            };
            let items = list_items(mem, layout, obj, n)?;
            let pairs: Vec<(Option<u64>, u64)> = items.iter().map(|v| (None, *v)).collect();
            render_container(mem, layout, ("[", "]"), &pairs, len, false, depth, limit)
        }
        Kind::Dict => {
            let len = dict_len(mem, layout, obj)?;
            let items = if depth > RENDER_MAX_DEPTH {
                Vec::new()
            } else {
                dict_items(mem, layout, obj, RENDER_MAX_ITEMS)?
            };
            let pairs: Vec<(Option<u64>, u64)> =
                items.iter().map(|(k, v)| (Some(*k), *v)).collect();
            render_container(mem, layout, ("{", "}"), &pairs, len, false, depth, limit)
        }
        Kind::Other => format!("<{name} at {obj:#x}>"),
    })
}

#[allow(clippy::too_many_arguments)]
fn render_container<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    (open, close): (&str, &str),
    items: &[(Option<u64>, u64)],
    len: u64,
    is_tuple: bool,
    depth: usize,
    limit: usize,
) -> String {
    let mut out = String::from(open);
    if len == 0 {
        out.push_str(close);
        return out;
    }
    if depth > RENDER_MAX_DEPTH {
        out.push_str("...");
        out.push_str(close);
        return out;
    }
    // Room always kept for ", ..." + "," (1-tuples) + the closing bracket.
    let reserve = 5 + 1 + close.len();
    let mut used = char_len(&out);
    let mut shown = 0usize;
    for (key, value) in items {
        let sep = if shown > 0 { ", " } else { "" };
        let room = limit.saturating_sub(used + sep.len() + reserve);
        if room < 3 {
            break;
        }
        let piece = match key {
            None => render(mem, layout, *value, depth + 1, room),
            Some(k) => {
                let k = render(mem, layout, *k, depth + 1, room.saturating_sub(5).max(3));
                let v_room = room.saturating_sub(char_len(&k) + 2);
                if v_room < 3 {
                    break;
                }
                format!("{k}: {}", render(mem, layout, *value, depth + 1, v_room))
            }
        };
        out.push_str(sep);
        out.push_str(&piece);
        used += sep.len() + char_len(&piece);
        shown += 1;
    }
    if (shown as u64) < len {
        out.push_str(if shown > 0 { ", ..." } else { "..." });
    } else if is_tuple && len == 1 {
        out.push(',');
    }
    out.push_str(close);
    out
}

/// `'…'` (or `"…"`) of escaped code points with Python's quote choice, cut to
/// `limit` characters with a trailing `...` when cut or when `more` is set.
fn quote_repr(
    cps: &[u32],
    more: bool,
    prefix: &str,
    limit: usize,
    escape: fn(u32, char) -> String,
) -> String {
    let has_single = cps.contains(&u32::from('\''));
    let has_double = cps.contains(&u32::from('"'));
    let quote = if has_single && !has_double { '"' } else { '\'' };
    let pieces: Vec<String> = cps.iter().map(|c| escape(*c, quote)).collect();
    let frame = prefix.len() + 2;
    let total: usize = pieces.iter().map(|p| char_len(p)).sum::<usize>() + frame;
    let mut out = String::from(prefix);
    out.push(quote);
    if !more && total <= limit {
        pieces.iter().for_each(|p| out.push_str(p));
        out.push(quote);
        return out;
    }
    let room = limit.saturating_sub(frame + 3);
    let mut used = 0;
    for p in &pieces {
        let n = char_len(p);
        if used + n > room {
            break;
        }
        out.push_str(p);
        used += n;
    }
    out.push(quote);
    out.push_str("...");
    out
}

/// One code point as Python's `str.__repr__` writes it.
fn escape_char(c: u32, quote: char) -> String {
    match c {
        0x5c => "\\\\".into(),
        0x09 => "\\t".into(),
        0x0a => "\\n".into(),
        0x0d => "\\r".into(),
        _ if c == u32::from(quote) => format!("\\{quote}"),
        0..=0x1f | 0x7f => format!("\\x{c:02x}"),
        0x20..=0x7e => char::from_u32(c).map(String::from).unwrap_or_default(),
        _ if is_printable(c) => char::from_u32(c).map(String::from).unwrap_or_default(),
        0x80..=0xff => format!("\\x{c:02x}"),
        0x100..=0xffff => format!("\\u{c:04x}"),
        _ => format!("\\U{c:08x}"),
    }
}

/// One byte as Python's `bytes.__repr__` writes it.
fn escape_byte(c: u32, quote: char) -> String {
    match c {
        0x5c => "\\\\".into(),
        0x09 => "\\t".into(),
        0x0a => "\\n".into(),
        0x0d => "\\r".into(),
        _ if c == u32::from(quote) => format!("\\{quote}"),
        0x20..=0x7e => char::from_u32(c).map(String::from).unwrap_or_default(),
        _ => format!("\\x{:02x}", c & 0xff),
    }
}

/// An approximation of `Py_UNICODE_ISPRINTABLE` for non-ASCII code points
/// without the Unicode database: control (Cc), format (Cf), separator
/// (Zs/Zl/Zp), surrogate, private-use and non-character code points are not
/// printable; unassigned ones (Cn) are treated as printable.
fn is_printable(c: u32) -> bool {
    !matches!(c,
        0x80..=0xa0 | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891
        | 0x8e2 | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f
        | 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000 | 0xd800..=0xdfff
        | 0xe000..=0xf8ff | 0xfdd0..=0xfdef | 0xfeff | 0xfff9..=0xfffb
        | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3
        | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..)
        && (c & 0xfffe) != 0xfffe
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Version;
    use pyrometer_process::ImageMemory;
    use std::collections::HashMap;

    fn layout(minor: u8) -> Layout {
        Layout::for_version(Version::new(3, minor, 0)).expect("known version")
    }

    /// A synthetic CPython heap built with a real layout's offsets.
    struct Img {
        mem: ImageMemory,
        next: u64,
        l: Layout,
        types: HashMap<String, u64>,
    }

    impl Img {
        fn new(minor: u8) -> Self {
            Img {
                mem: ImageMemory::new(),
                next: 0x10_0000,
                l: layout(minor),
                types: HashMap::new(),
            }
        }
        fn minor(&self) -> u8 {
            self.l.version.minor
        }
        /// A fresh region; regions are separated by unmapped gaps.
        fn alloc(&mut self, size: usize) -> u64 {
            let addr = self.next;
            self.mem.insert(addr, vec![0; size.max(8)]);
            self.next = (addr + size as u64 + 0x100 + 0xff) & !0xff;
            addr
        }
        fn w64(&mut self, addr: u64, v: u64) {
            self.mem.write(addr, &v.to_le_bytes());
        }
        fn w32(&mut self, addr: u64, v: u32) {
            self.mem.write(addr, &v.to_le_bytes());
        }
        fn w8(&mut self, addr: u64, v: u8) {
            self.mem.write(addr, &[v]);
        }
        fn cstr(&mut self, s: &str) -> u64 {
            let a = self.alloc(s.len() + 1);
            self.mem.write(a, s.as_bytes());
            a
        }
        fn ty_with(&mut self, name: &str, flags: u64) -> u64 {
            if let Some(t) = self.types.get(name) {
                return *t;
            }
            let t = self.alloc(0x400);
            let n = self.cstr(name);
            let l = self.l.clone();
            self.w64(t + l.ob_type, t);
            self.w64(t + l.type_tp_name, n);
            self.w64(t + l.type_tp_flags, flags);
            self.w64(t + l.type_tp_basicsize, 16);
            self.types.insert(name.to_string(), t);
            t
        }
        fn ty(&mut self, name: &str) -> u64 {
            let flags = match name {
                "str" => TPFLAGS_UNICODE_SUBCLASS,
                "bytes" => TPFLAGS_BYTES_SUBCLASS,
                "int" | "bool" => TPFLAGS_LONG_SUBCLASS,
                "tuple" => TPFLAGS_TUPLE_SUBCLASS,
                "list" => TPFLAGS_LIST_SUBCLASS,
                "dict" => TPFLAGS_DICT_SUBCLASS,
                _ => 0,
            };
            self.ty_with(name, flags)
        }
        fn obj(&mut self, tyname: &str, size: usize) -> u64 {
            let t = self.ty(tyname);
            let o = self.alloc(size);
            let off = self.l.ob_type;
            self.w64(o + off, t);
            o
        }
        fn state(&self, kind: u32, compact: bool, ascii: bool) -> u32 {
            let mut s = kind << STATE_KIND_SHIFT;
            if compact {
                s |= STATE_COMPACT;
            }
            if ascii {
                s |= STATE_ASCII;
            }
            if self.minor() <= 11 {
                s |= STATE_READY_311;
            }
            s
        }
        fn encode(s: &str) -> (u32, Vec<u8>, bool) {
            let cps: Vec<u32> = s.chars().map(u32::from).collect();
            let max = cps.iter().copied().max().unwrap_or(0);
            let kind = if max < 0x100 {
                1
            } else if max < 0x10000 {
                2
            } else {
                4
            };
            let mut data = Vec::new();
            for c in &cps {
                data.extend_from_slice(&c.to_le_bytes()[..kind as usize]);
            }
            (kind, data, max < 0x80)
        }
        fn str_(&mut self, s: &str) -> u64 {
            let (kind, data, ascii) = Self::encode(s);
            let l = self.l.clone();
            let off = if ascii {
                l.unicode_ascii_data
            } else {
                l.unicode_compact_data
            };
            let o = self.obj("str", off as usize + data.len() + kind as usize);
            self.w64(o + l.unicode_length, s.chars().count() as u64);
            let st = self.state(kind, true, ascii);
            self.w32(o + l.unicode_state, st);
            self.mem.write(o + off, &data);
            o
        }
        fn str_legacy(&mut self, s: &str) -> u64 {
            let (kind, data, ascii) = Self::encode(s);
            let l = self.l.clone();
            let t = self.ty_with("MyStr", TPFLAGS_UNICODE_SUBCLASS);
            let o2 = self.alloc(l.unicode_compact_data as usize + 8);
            self.w64(o2 + l.ob_type, t);
            let d = self.alloc(data.len() + kind as usize);
            self.mem.write(d, &data);
            self.w64(o2 + l.unicode_length, s.chars().count() as u64);
            let st = self.state(kind, false, ascii);
            self.w32(o2 + l.unicode_state, st);
            self.w64(o2 + l.unicode_compact_data, d);
            o2
        }
        fn bytes_(&mut self, b: &[u8]) -> u64 {
            let l = self.l.clone();
            let o = self.obj("bytes", l.bytes_sval as usize + b.len() + 1);
            self.w64(o + l.bytes_size, b.len() as u64);
            self.mem.write(o + l.bytes_sval, b);
            o
        }
        fn int_typed(&mut self, tyname: &str, v: i128) -> u64 {
            let l = self.l.clone();
            let mut mag = v.unsigned_abs();
            let mut digits = Vec::new();
            while mag != 0 {
                digits.push((mag & 0x3fff_ffff) as u32);
                mag >>= 30;
            }
            self.int_digits(tyname, v < 0, &digits, l)
        }
        fn int_digits(&mut self, tyname: &str, neg: bool, digits: &[u32], l: Layout) -> u64 {
            let o = self.obj(tyname, l.long_digit as usize + 4 * digits.len().max(1));
            match l.long_model {
                LongModel::SignedSize { ob_size } => {
                    let n = digits.len() as i64;
                    self.w64(o + ob_size, if neg { -n } else { n } as u64);
                }
                LongModel::Tagged { lv_tag } => {
                    let sign = if digits.is_empty() {
                        1
                    } else if neg {
                        2
                    } else {
                        0
                    };
                    self.w64(o + lv_tag, (digits.len() as u64) << 3 | sign);
                }
            }
            for (i, d) in digits.iter().enumerate() {
                self.w32(o + l.long_digit + 4 * i as u64, *d);
            }
            o
        }
        fn int(&mut self, v: i128) -> u64 {
            self.int_typed("int", v)
        }
        fn float_(&mut self, v: f64) -> u64 {
            let off = self.l.float_fval;
            let o = self.obj("float", 24);
            self.w64(o + off, v.to_bits());
            o
        }
        fn none(&mut self) -> u64 {
            self.obj("NoneType", 16)
        }
        fn tuple_(&mut self, items: &[u64]) -> u64 {
            let l = self.l.clone();
            let o = self.obj("tuple", l.tuple_item as usize + 8 * items.len());
            self.w64(o + l.tuple_size, items.len() as u64);
            for (i, it) in items.iter().enumerate() {
                self.w64(o + l.tuple_item + 8 * i as u64, *it);
            }
            o
        }
        fn list_(&mut self, items: &[u64]) -> u64 {
            let l = self.l.clone();
            let o = self.obj("list", 40);
            let arr = self.alloc(8 * items.len());
            self.w64(o + l.list_size, items.len() as u64);
            self.w64(o + l.list_item, arr);
            for (i, it) in items.iter().enumerate() {
                self.w64(arr + 8 * i as u64, *it);
            }
            o
        }
        /// A keys object; entries are `(key, value)` with key 0 = deleted.
        /// `kind` is used on 3.11+ only (0 general, 1 unicode, 2 split).
        fn keys(&mut self, entries: &[(u64, u64)], kind: u8) -> u64 {
            let l = self.l.clone();
            let mut size = 8u64;
            while entries.len() as u64 > size * 2 / 3 {
                size *= 2;
            }
            match l.dict_keys_model {
                DictKeysModel::Sized {
                    dk_size,
                    dk_nentries,
                    dk_indices,
                } => {
                    let ix = if size <= 0xff { 1 } else { 2 };
                    let ent = dk_indices + size * ix;
                    let k = self.alloc((ent + 24 * size) as usize);
                    self.w64(k, 1);
                    self.w64(k + dk_size, size);
                    self.w64(k + dk_nentries, entries.len() as u64);
                    for (i, (key, value)) in entries.iter().enumerate() {
                        self.w64(k + ent + 24 * i as u64, 0x1234);
                        self.w64(k + ent + 24 * i as u64 + 8, *key);
                        self.w64(k + ent + 24 * i as u64 + 16, *value);
                    }
                    k
                }
                DictKeysModel::Log2 {
                    dk_log2_size,
                    dk_log2_index_bytes,
                    dk_kind,
                    dk_nentries,
                    dk_indices,
                } => {
                    let log2 = size.trailing_zeros() as u8;
                    let log2_ix = if log2 < 8 { log2 } else { log2 + 1 };
                    let ent = dk_indices + (1u64 << log2_ix);
                    let es: u64 = if kind == 0 { 24 } else { 16 };
                    let k = self.alloc((ent + es * size) as usize);
                    self.w8(k + dk_log2_size, log2);
                    self.w8(k + dk_log2_index_bytes, log2_ix);
                    self.w8(k + dk_kind, kind);
                    self.w64(k + dk_nentries, entries.len() as u64);
                    for (i, (key, value)) in entries.iter().enumerate() {
                        let e = k + ent + es * i as u64;
                        if kind == 0 {
                            self.w64(e, 0x1234);
                            self.w64(e + 8, *key);
                            self.w64(e + 16, *value);
                        } else {
                            self.w64(e, *key);
                            self.w64(e + 8, *value);
                        }
                    }
                    k
                }
            }
        }
        fn dict_raw(&mut self, keys: u64, values: u64, used: u64) -> u64 {
            let l = self.l.clone();
            let d = self.obj("dict", 48);
            self.w64(d + l.dict_used, used);
            self.w64(d + l.dict_keys, keys);
            self.w64(d + l.dict_values, values);
            d
        }
        fn dict_(&mut self, entries: &[(u64, u64)], unicode: bool) -> u64 {
            let keys = self.keys(entries, u8::from(unicode));
            let used = entries.iter().filter(|(k, v)| *k != 0 && *v != 0).count();
            self.dict_raw(keys, 0, used as u64)
        }
        /// A split values block in this version's format, for `vals`
        /// (indexed like the shared keys' entries) and insertion `order`.
        fn values_block(&mut self, vals: &[u64], order: &[u8]) -> u64 {
            match (self.l.dict_keys_model, self.l.instance_dict) {
                (DictKeysModel::Sized { .. }, _) => {
                    let v = self.alloc(8 * vals.len());
                    for (i, x) in vals.iter().enumerate() {
                        self.w64(v + 8 * i as u64, *x);
                    }
                    v
                }
                (_, InstanceDictModel::InlineValues313) => {
                    let cap = vals.len().max(order.len());
                    let v = self.alloc(8 + 8 * cap + cap);
                    self.values_313_at(v, vals, order, cap);
                    v
                }
                _ => {
                    let prefix = (vals.len() + 2).div_ceil(8) * 8;
                    let block = self.alloc(prefix + 8 * vals.len());
                    let v = block + prefix as u64;
                    self.w8(v - 1, prefix as u8);
                    self.w8(v - 2, order.len() as u8);
                    for (i, ix) in order.iter().enumerate() {
                        self.w8(v - 3 - i as u64, *ix);
                    }
                    for (i, x) in vals.iter().enumerate() {
                        self.w64(v + 8 * i as u64, *x);
                    }
                    v
                }
            }
        }
        fn values_313_at(&mut self, v: u64, vals: &[u64], order: &[u8], cap: usize) {
            self.mem.write(v, &[cap as u8, order.len() as u8, 0, 1]);
            for (i, x) in vals.iter().enumerate() {
                self.w64(v + 8 + 8 * i as u64, *x);
            }
            for (i, ix) in order.iter().enumerate() {
                self.w8(v + 8 + 8 * cap as u64 + i as u64, *ix);
            }
        }
        /// A split dict: shared `names`, this dict's `vals` and `order`.
        fn split_dict(&mut self, names: &[u64], vals: &[u64], order: &[u8]) -> u64 {
            let entries: Vec<(u64, u64)> = names.iter().map(|n| (*n, 0)).collect();
            let keys = self.keys(&entries, 2);
            let values = self.values_block(vals, order);
            self.dict_raw(keys, values, order.len() as u64)
        }
        /// A heap class whose instances have managed dicts where the
        /// version has them, `tp_dictoffset` 16 before.
        fn class(&mut self, name: &str, shared: &[u64]) -> u64 {
            let l = self.l.clone();
            let flags = match l.instance_dict {
                InstanceDictModel::DictOffset => 0,
                InstanceDictModel::InlineValues313 => TPFLAGS_MANAGED_DICT | TPFLAGS_INLINE_VALUES,
                _ => TPFLAGS_MANAGED_DICT,
            };
            let t = self.ty_with(name, flags | (1 << 9));
            if l.instance_dict == InstanceDictModel::DictOffset {
                self.w64(t + l.type_tp_dictoffset, 16);
                self.w64(t + l.type_tp_basicsize, 24);
            } else {
                self.w64(t + l.type_tp_dictoffset, (-1i64) as u64);
                let entries: Vec<(u64, u64)> = shared.iter().map(|n| (*n, 0)).collect();
                let keys = self.keys(&entries, 2);
                self.w64(t + l.heap_type_cached_keys.unwrap(), keys);
            }
            t
        }
        /// An instance of `class` with a pre-header and room for inline
        /// values (capacity `cap`). Returns the object address.
        fn instance(&mut self, class: u64, cap: usize) -> u64 {
            let region = self.alloc(32 + 24 + 8 + 9 * cap);
            let o = region + 32;
            let off = self.l.ob_type;
            self.w64(o + off, class);
            o
        }
    }

    fn items(img: &Img, obj: u64) -> Vec<(String, String)> {
        dict_items(&img.mem, &img.l, obj, 100)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                (
                    render_value(&img.mem, &img.l, k, 50),
                    render_value(&img.mem, &img.l, v, 50),
                )
            })
            .collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn type_names_are_bounded() {
        let mut img = Img::new(12);
        let o = img.obj("some.Type", 16);
        assert_eq!(type_name(&img.mem, &img.l, o).unwrap(), "some.Type");
        // An unterminated name running into unmapped memory.
        let t = img.ty("some.Type");
        let long = img.alloc(64);
        img.mem.write(long, &[b'x'; 64]);
        img.w64(t + img.l.type_tp_name, long);
        assert!(matches!(
            type_name(&img.mem, &img.l, o),
            Err(ObjectError::Memory(_))
        ));
        assert!(matches!(
            type_name_of_type(&img.mem, &img.l, t, 10),
            Err(ObjectError::TooLarge { .. })
        ));
        assert_eq!(type_name(&img.mem, &img.l, 0), Err(ObjectError::Null));
        assert!(matches!(
            type_name(&img.mem, &img.l, 0x10_0003),
            Err(ObjectError::Corrupt(_))
        ));
        let no_type = img.alloc(16);
        assert!(matches!(
            type_name(&img.mem, &img.l, no_type),
            Err(ObjectError::Corrupt(_))
        ));
    }

    #[test]
    fn c_strings_ending_at_a_page_boundary() {
        let mut mem = ImageMemory::new();
        // "abc\0" in the last bytes of a page followed by nothing mapped.
        let mut page = vec![b'z'; 0x1000];
        page[0xffc..].copy_from_slice(b"abc\0");
        mem.insert(0x20_0000, page);
        assert_eq!(read_c_string(&mem, 0x20_0ffc, 100).unwrap(), "abc");
        assert_eq!(read_c_string(&mem, 0x20_0ffc, 3).unwrap(), "abc");
        assert!(read_c_string(&mem, 0x20_0ffc, 2).is_err());
    }

    #[test]
    fn strings_of_every_kind() {
        for minor in 8..=13 {
            let mut img = Img::new(minor);
            let cases = [
                "",
                "hello",
                "héllo ÿ",
                "中文 text",
                "astral 😀 ok",
                "\u{d7ff}",
            ];
            for s in cases {
                let o = img.str_(s);
                assert_eq!(read_str(&img.mem, &img.l, o, 100).unwrap(), s, "3.{minor}");
                assert_eq!(
                    str_len(&img.mem, &img.l, o).unwrap(),
                    s.chars().count() as u64
                );
                let legacy = img.str_legacy(s);
                assert_eq!(
                    read_str(&img.mem, &img.l, legacy, 100).unwrap(),
                    s,
                    "3.{minor} legacy"
                );
            }
            let o = img.str_("abcdef");
            assert_eq!(
                read_str(&img.mem, &img.l, o, 5),
                Err(ObjectError::TooLarge {
                    what: "str",
                    size: 6,
                    max: 5
                })
            );
            assert_eq!(
                read_str_prefix(&img.mem, &img.l, o, 3).unwrap(),
                ("abc".to_string(), 6)
            );
        }
    }

    #[test]
    fn latin1_is_not_utf8() {
        let mut img = Img::new(12);
        let o = img.str_("é");
        // One byte 0xE9 in memory, not the two UTF-8 bytes.
        let mut b = [0u8; 2];
        img.mem
            .read(o + img.l.unicode_compact_data, &mut b)
            .unwrap();
        assert_eq!(b, [0xe9, 0]);
        assert_eq!(read_str(&img.mem, &img.l, o, 10).unwrap(), "é");
    }

    #[test]
    fn corrupt_strings() {
        let mut img = Img::new(11);
        let l = img.l.clone();
        let o = img.str_("abc");
        // Wrong type.
        let i = img.int(5);
        assert!(matches!(
            read_str(&img.mem, &l, i, 10),
            Err(ObjectError::WrongType { expected: "str", ref found }) if found == "int"
        ));
        // Negative length.
        img.w64(o + l.unicode_length, (-1i64) as u64);
        assert!(matches!(
            read_str(&img.mem, &l, o, 10),
            Err(ObjectError::Corrupt(_))
        ));
        // Huge length: bounded by the caller, then by the mapped memory.
        img.w64(o + l.unicode_length, 1 << 40);
        assert!(matches!(
            read_str(&img.mem, &l, o, 4096),
            Err(ObjectError::TooLarge { .. })
        ));
        assert!(matches!(
            read_str_prefix(&img.mem, &l, o, usize::MAX),
            Err(ObjectError::Memory(_))
        ));
        // Invalid kind.
        img.w64(o + l.unicode_length, 3);
        img.w32(o + l.unicode_state, 3 << STATE_KIND_SHIFT | STATE_COMPACT);
        assert!(matches!(
            read_str(&img.mem, &l, o, 10),
            Err(ObjectError::Corrupt(_))
        ));
        // ASCII flag with a non-ASCII byte.
        img.w32(o + l.unicode_state, img.state(1, true, true));
        img.w8(o + l.unicode_ascii_data, 0xff);
        assert!(matches!(
            read_str(&img.mem, &l, o, 10),
            Err(ObjectError::Corrupt(_))
        ));
        // A legacy string that is not ready (3.11 and older).
        let s = img.str_legacy("abc");
        img.w32(s + l.unicode_state, 1 << STATE_KIND_SHIFT);
        assert!(matches!(
            read_str(&img.mem, &l, s, 10),
            Err(ObjectError::Unsupported(_))
        ));
        // Code points beyond U+10FFFF.
        let w = img.str_("😀");
        img.w32(w + l.unicode_compact_data, 0x11_0000);
        assert!(matches!(
            read_str(&img.mem, &l, w, 10),
            Err(ObjectError::Corrupt(_))
        ));
    }

    #[test]
    fn bytes_objects() {
        let mut img = Img::new(10);
        let o = img.bytes_(b"a\x00b\xff");
        assert_eq!(read_bytes(&img.mem, &img.l, o, 10).unwrap(), b"a\x00b\xff");
        assert!(matches!(
            read_bytes(&img.mem, &img.l, o, 3),
            Err(ObjectError::TooLarge { .. })
        ));
        assert_eq!(
            read_bytes_prefix(&img.mem, &img.l, o, 2).unwrap(),
            (b"a\x00".to_vec(), 4)
        );
        let l = img.l.clone();
        img.w64(o + l.bytes_size, 1 << 30);
        assert!(matches!(
            read_bytes(&img.mem, &l, o, 1 << 31),
            Err(ObjectError::TooLarge { .. })
        ));
        img.w64(o + l.bytes_size, 1 << 20);
        assert!(matches!(
            read_bytes(&img.mem, &l, o, 1 << 31),
            Err(ObjectError::Memory(_))
        ));
        let s = img.str_("x");
        assert!(matches!(
            read_bytes(&img.mem, &l, s, 10),
            Err(ObjectError::WrongType { .. })
        ));
    }

    #[test]
    fn ints_in_both_models() {
        for minor in [10, 11, 12, 13] {
            let mut img = Img::new(minor);
            for v in [
                0i128,
                1,
                -1,
                5,
                1 << 30,
                -(1 << 30),
                i64::MAX as i128,
                i64::MIN as i128,
            ] {
                let o = img.int(v);
                assert_eq!(
                    read_int(&img.mem, &img.l, o).unwrap() as i128,
                    v,
                    "3.{minor}"
                );
                assert_eq!(
                    read_int_value(&img.mem, &img.l, o, 10).unwrap(),
                    PyInt::Small(v as i64)
                );
            }
            for v in [
                i64::MAX as i128 + 1,
                i64::MIN as i128 - 1,
                1 << 100,
                -(3i128.pow(70)),
            ] {
                let o = img.int(v);
                assert_eq!(
                    read_int_value(&img.mem, &img.l, o, 10).unwrap(),
                    PyInt::Big(v.to_string())
                );
                assert!(matches!(
                    read_int(&img.mem, &img.l, o),
                    Err(ObjectError::TooLarge { .. })
                ));
            }
        }
    }

    #[test]
    fn huge_and_corrupt_ints() {
        let mut img = Img::new(12);
        let l = img.l.clone();
        // 2**300 - 1: 10 digits of 2**30 - 1.
        let o = img.int_digits("int", false, &[0x3fff_ffff; 10], l.clone());
        assert_eq!(
            read_int_value(&img.mem, &l, o, 100).unwrap().to_string(),
            "2037035976334486086268445688409378161051468393665936250636140449354381299763336706183397375"
        );
        assert!(matches!(
            read_int_value(&img.mem, &l, o, 9),
            Err(ObjectError::TooLarge { .. })
        ));
        // A digit with bit 30 set.
        let bad = img.int_digits("int", false, &[1 << 30], l.clone());
        assert!(matches!(
            read_int(&img.mem, &l, bad),
            Err(ObjectError::Corrupt(_))
        ));
        // An absurd digit count.
        let LongModel::Tagged { lv_tag } = l.long_model else {
            unreachable!()
        };
        img.w64(o + lv_tag, u64::MAX << 3);
        assert!(matches!(
            read_int_value(&img.mem, &l, o, DEFAULT_MAX_INT_DIGITS),
            Err(ObjectError::TooLarge { .. })
        ));
        img.w64(o + lv_tag, 3);
        assert!(matches!(
            read_int(&img.mem, &l, o),
            Err(ObjectError::Corrupt(_))
        ));
    }

    #[test]
    fn bools_floats_none() {
        for minor in [9, 12] {
            let mut img = Img::new(minor);
            let t = img.int_typed("bool", 1);
            let f = img.int_typed("bool", 0);
            assert!(read_bool(&img.mem, &img.l, t).unwrap());
            assert!(!read_bool(&img.mem, &img.l, f).unwrap());
            assert_eq!(read_int(&img.mem, &img.l, t).unwrap(), 1);
            let i = img.int(1);
            assert!(matches!(
                read_bool(&img.mem, &img.l, i),
                Err(ObjectError::WrongType { .. })
            ));
            let x = img.float_(2.5);
            assert_eq!(read_float(&img.mem, &img.l, x).unwrap(), 2.5);
            assert!(read_float(&img.mem, &img.l, i).is_err());
            let n = img.none();
            assert!(is_none(&img.mem, &img.l, n).unwrap());
            assert!(!is_none(&img.mem, &img.l, i).unwrap());
        }
    }

    #[test]
    fn float_repr_matches_python() {
        let cases: [(f64, &str); 20] = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1234.5678, "1234.5678"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789.125, "123456789.125"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (2.5e-5, "2.5e-05"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (0.30000000000000004, "0.30000000000000004"),
            (12345678901234567.0, "1.2345678901234568e+16"),
        ];
        for (v, want) in cases {
            assert_eq!(float_repr(v), want, "{v:e}");
        }
    }

    #[test]
    fn tuples_and_lists() {
        let mut img = Img::new(13);
        let l = img.l.clone();
        let a = img.int(1);
        let b = img.int(2);
        let t = img.tuple_(&[a, b, a]);
        assert_eq!(tuple_items(&img.mem, &l, t, 10).unwrap(), vec![a, b, a]);
        assert_eq!(tuple_items(&img.mem, &l, t, 2).unwrap(), vec![a, b]);
        assert_eq!(tuple_len(&img.mem, &l, t).unwrap(), 3);
        let li = img.list_(&[b, a]);
        assert_eq!(list_items(&img.mem, &l, li, 10).unwrap(), vec![b, a]);
        assert!(matches!(
            list_items(&img.mem, &l, t, 10),
            Err(ObjectError::WrongType { .. })
        ));
        // Corrupt sizes.
        img.w64(t + l.tuple_size, (-5i64) as u64);
        assert!(matches!(
            tuple_items(&img.mem, &l, t, 10),
            Err(ObjectError::Corrupt(_))
        ));
        img.w64(t + l.tuple_size, 1 << 50);
        assert!(matches!(
            tuple_items(&img.mem, &l, t, usize::MAX),
            Err(ObjectError::Memory(_))
        ));
        img.w64(li + l.list_item, 0);
        assert!(matches!(
            list_items(&img.mem, &l, li, 10),
            Err(ObjectError::Corrupt(_))
        ));
        let empty = img.list_(&[]);
        assert!(list_items(&img.mem, &l, empty, 10).unwrap().is_empty());
    }

    #[test]
    fn combined_dicts_in_insertion_order() {
        for minor in 8..=13 {
            let mut img = Img::new(minor);
            let (ka, kb, kc) = (img.str_("a"), img.str_("b"), img.str_("c"));
            let (v1, v2, v3) = (img.int(1), img.int(2), img.int(3));
            // Unicode-keyed, with a deleted entry in the middle.
            let d = img.dict_(&[(ka, v1), (0, 0), (kc, v3), (kb, v2)], true);
            assert_eq!(
                items(&img, d),
                pairs(&[("'a'", "1"), ("'c'", "3"), ("'b'", "2")]),
                "3.{minor}"
            );
            assert_eq!(dict_len(&img.mem, &img.l, d).unwrap(), 3);
            assert_eq!(dict_get_str(&img.mem, &img.l, d, "c").unwrap(), Some(v3));
            assert_eq!(dict_get_str(&img.mem, &img.l, d, "zz").unwrap(), None);
            assert_eq!(
                dict_items(&img.mem, &img.l, d, 2).unwrap(),
                vec![(ka, v1), (kc, v3)]
            );
            // General keys (ints and strings mixed); a NULL value is skipped too.
            let g = img.dict_(&[(v1, ka), (kb, v2), (v3, 0), (v2, kc)], false);
            assert_eq!(
                items(&img, g),
                pairs(&[("1", "'a'"), ("'b'", "2"), ("2", "'c'")])
            );
            assert_eq!(dict_get_str(&img.mem, &img.l, g, "b").unwrap(), Some(v2));
        }
    }

    #[test]
    fn string_lookup_skips_small_and_odd_keys() {
        for minor in [10, 13] {
            let mut img = Img::new(minor);
            // None is a 16-byte object: shorter than a str header.
            let none = img.none();
            let (b, x) = (img.bytes_(b"key"), img.str_("kez"));
            let (key, wide) = (img.str_("key"), img.str_("k\u{e9}y"));
            let v = img.int(1);
            let d = img.dict_(&[(none, v), (b, v), (x, v), (wide, none), (key, x)], false);
            assert_eq!(dict_get_str(&img.mem, &img.l, d, "key").unwrap(), Some(x));
            assert_eq!(
                dict_get_str(&img.mem, &img.l, d, "k\u{e9}y").unwrap(),
                Some(none)
            );
            assert_eq!(dict_get_str(&img.mem, &img.l, d, "ke").unwrap(), None);
            // A key pointer into nowhere is an error, not a miss.
            let bad = img.dict_(&[(0x7000_0000, v)], false);
            assert!(dict_get_str(&img.mem, &img.l, bad, "key").is_err());
        }
    }

    #[test]
    fn larger_dicts_use_wider_indices() {
        for minor in [10, 12] {
            let mut img = Img::new(minor);
            let entries: Vec<(u64, u64)> = (0..200)
                .map(|i| {
                    let k = img.int(i);
                    (k, k)
                })
                .collect();
            let d = img.dict_(&entries, false);
            let got = dict_items(&img.mem, &img.l, d, 1000).unwrap();
            assert_eq!(got, entries);
        }
    }

    #[test]
    fn split_dicts_follow_their_own_insertion_order() {
        for minor in 8..=13 {
            let mut img = Img::new(minor);
            let (x, y, z) = (img.str_("x"), img.str_("y"), img.str_("z"));
            let (v1, v2) = (img.int(1), img.int(2));
            // Shared keys x, y, z; this dict has y then x (≤3.10: entry order).
            let d = img.split_dict(&[x, y, z], &[v1, v2, 0], &[1, 0]);
            let want = if minor <= 10 {
                pairs(&[("'x'", "1"), ("'y'", "2")])
            } else {
                pairs(&[("'y'", "2"), ("'x'", "1")])
            };
            assert_eq!(items(&img, d), want, "3.{minor}");
            assert_eq!(dict_get_str(&img.mem, &img.l, d, "y").unwrap(), Some(v2));
            assert_eq!(dict_get_str(&img.mem, &img.l, d, "z").unwrap(), None);
        }
    }

    #[test]
    fn corrupt_dicts() {
        for minor in [9, 12] {
            let mut img = Img::new(minor);
            let l = img.l.clone();
            let k = img.str_("k");
            let d = img.dict_(&[(k, k)], true);
            let keys = img.mem.read_u64(d + l.dict_keys).unwrap();
            match l.dict_keys_model {
                DictKeysModel::Sized {
                    dk_size,
                    dk_nentries,
                    ..
                } => {
                    img.w64(keys + dk_nentries, 1 << 40);
                    assert!(matches!(
                        dict_items(&img.mem, &l, d, 10),
                        Err(ObjectError::Corrupt(_))
                    ));
                    img.w64(keys + dk_nentries, 1);
                    img.w64(keys + dk_size, 12);
                    assert!(matches!(
                        dict_items(&img.mem, &l, d, 10),
                        Err(ObjectError::Corrupt(_))
                    ));
                    // A size consistent with a huge entry count: reads fail, no hang.
                    img.w64(keys + dk_size, 1 << 40);
                    img.w64(keys + dk_nentries, 1 << 39);
                    assert!(matches!(
                        dict_items(&img.mem, &l, d, 10),
                        Err(ObjectError::Memory(_))
                    ));
                }
                DictKeysModel::Log2 {
                    dk_log2_size,
                    dk_log2_index_bytes,
                    dk_kind,
                    ..
                } => {
                    img.w8(keys + dk_kind, 7);
                    assert!(matches!(
                        dict_items(&img.mem, &l, d, 10),
                        Err(ObjectError::Corrupt(_))
                    ));
                    img.w8(keys + dk_kind, 1);
                    img.w8(keys + dk_log2_index_bytes, 9);
                    assert!(matches!(
                        dict_items(&img.mem, &l, d, 10),
                        Err(ObjectError::Corrupt(_))
                    ));
                    img.w8(keys + dk_log2_size, 200);
                    assert!(matches!(
                        dict_items(&img.mem, &l, d, 10),
                        Err(ObjectError::Corrupt(_))
                    ));
                }
            }
            img.w64(d + l.dict_keys, 0);
            assert!(matches!(
                dict_items(&img.mem, &l, d, 10),
                Err(ObjectError::Corrupt(_))
            ));
            let t = img.tuple_(&[]);
            assert!(matches!(
                dict_items(&img.mem, &l, t, 10),
                Err(ObjectError::WrongType { .. })
            ));
        }
        // Split values whose order names an entry beyond the keys.
        let mut img = Img::new(12);
        let x = img.str_("x");
        let v = img.int(1);
        let d = img.split_dict(&[x], &[v, v], &[1]);
        assert!(matches!(
            dict_items(&img.mem, &img.l, d, 10),
            Err(ObjectError::Corrupt(_))
        ));
    }

    #[test]
    fn instance_attributes_in_every_model() {
        for minor in 8..=13 {
            let mut img = Img::new(minor);
            let l = img.l.clone();
            let (a, b) = (img.str_("a"), img.str_("b"));
            let (v1, v2) = (img.int(10), img.int(20));
            let class = img.class("Point", &[a, b]);
            let name = |img: &Img, o| {
                instance_attrs(&img.mem, &img.l, o, 10)
                    .unwrap()
                    .into_iter()
                    .map(|(k, _)| read_str(&img.mem, &img.l, k, 10).unwrap())
                    .collect::<Vec<_>>()
            };

            // 1. Attributes not in a dict object (≤3.10: there always is one).
            let o = img.instance(class, 2);
            match l.instance_dict {
                InstanceDictModel::DictOffset => {
                    let d = img.dict_(&[(b, v2), (a, v1)], true);
                    img.w64(o + 16, d);
                }
                InstanceDictModel::Managed311 => {
                    let vals = img.values_block(&[v1, v2], &[1, 0]);
                    img.w64(o - 32, vals);
                }
                InstanceDictModel::DictOrValues312 => {
                    let vals = img.values_block(&[v1, v2], &[1, 0]);
                    img.w64(o - 24, vals - 1);
                }
                InstanceDictModel::InlineValues313 => {
                    img.values_313_at(o + 16, &[v1, v2], &[1, 0], 2);
                }
            }
            assert_eq!(
                get_attr(&img.mem, &l, o, "a").unwrap(),
                Some(v1),
                "3.{minor}"
            );
            assert_eq!(get_attr(&img.mem, &l, o, "b").unwrap(), Some(v2));
            assert_eq!(get_attr(&img.mem, &l, o, "c").unwrap(), None);
            assert_eq!(name(&img, o), ["b", "a"]);

            // 2. A materialized dict takes precedence over stale values.
            if l.instance_dict != InstanceDictModel::DictOffset {
                let c = img.str_("c");
                let d = img.dict_(&[(c, v1)], true);
                // The managed dict pointer (3.12: the untagged dict-or-values).
                img.w64(o - 24, d);
                assert_eq!(get_attr(&img.mem, &l, o, "a").unwrap(), None);
                assert_eq!(get_attr(&img.mem, &l, o, "c").unwrap(), Some(v1));
            }

            // 3. No attributes at all.
            let empty = img.instance(class, 2);
            assert_eq!(instance_attrs(&img.mem, &l, empty, 10).unwrap(), vec![]);
        }
    }

    #[test]
    fn unsupported_and_invalid_dict_offsets() {
        let mut img = Img::new(10);
        let l = img.l.clone();
        let class = img.class("Neg", &[]);
        let o = img.instance(class, 0);
        img.w64(class + l.type_tp_dictoffset, (-8i64) as u64);
        assert!(matches!(
            get_attr(&img.mem, &l, o, "x"),
            Err(ObjectError::Unsupported(_))
        ));
        img.w64(class + l.type_tp_dictoffset, 1 << 40);
        assert!(matches!(
            get_attr(&img.mem, &l, o, "x"),
            Err(ObjectError::Corrupt(_))
        ));
        img.w64(class + l.type_tp_dictoffset, 0);
        assert_eq!(get_attr(&img.mem, &l, o, "x").unwrap(), None);
        // 3.13 inline values that were invalidated (moved to a dict).
        let mut img = Img::new(13);
        let x = img.str_("x");
        let v = img.int(1);
        let class = img.class("P", &[x]);
        let o = img.instance(class, 1);
        img.values_313_at(o + 16, &[v], &[0], 1);
        assert_eq!(get_attr(&img.mem, &img.l, o, "x").unwrap(), Some(v));
        img.w8(o + 16 + 3, 0);
        assert_eq!(get_attr(&img.mem, &img.l, o, "x").unwrap(), None);
    }

    fn render(img: &Img, o: u64) -> String {
        render_value(&img.mem, &img.l, o, 200)
    }

    #[test]
    fn render_scalars() {
        let mut img = Img::new(12);
        let cases: Vec<(u64, &str)> = vec![
            (img.int(-42), "-42"),
            (img.int(1 << 100), "1267650600228229401496703205376"),
            (img.int_typed("bool", 1), "True"),
            (img.int_typed("bool", 0), "False"),
            (img.float_(1e-7), "1e-07"),
            (img.none(), "None"),
            (img.str_("it's"), "\"it's\""),
            (img.str_("a'b\"c"), "'a\\'b\"c'"),
            (
                img.str_("tab\tnl\n\\ \u{7f}\u{1}"),
                "'tab\\tnl\\n\\\\ \\x7f\\x01'",
            ),
            (
                img.str_("é\u{a0}\u{ad}中😀\u{200b}"),
                "'é\\xa0\\xad中😀\\u200b'",
            ),
            (img.bytes_(b"a'\x00\xff\""), "b'a\\'\\x00\\xff\"'"),
            (img.bytes_(b"it's"), "b\"it's\""),
            (img.obj("Widget", 16), ""),
        ];
        for (o, want) in cases {
            if want.is_empty() {
                assert_eq!(render(&img, o), format!("<Widget at {o:#x}>"));
            } else {
                assert_eq!(render(&img, o), want);
            }
        }
        assert_eq!(render(&img, 0), "<NULL>");
        assert_eq!(render(&img, 0x8), "<unreadable at 0x8>");
    }

    #[test]
    fn render_truncates() {
        let mut img = Img::new(11);
        let long = "x".repeat(1000);
        let o = img.str_(&long);
        let r = render(&img, o);
        assert_eq!(r.chars().count(), 200);
        assert!(r.starts_with("'xxx") && r.ends_with("x'..."), "{r}");
        let r = render_value(&img.mem, &img.l, o, 20);
        assert_eq!(r, "'xxxxxxxxxxxxxxx'...");
        // Never cut an escape in half.
        let o = img.str_(&"\n".repeat(100));
        let r = render_value(&img.mem, &img.l, o, 12);
        assert_eq!(r, "'\\n\\n\\n'...");
        let big = img.int_digits("int", true, &[0x3fff_ffff; 60], img.l.clone());
        let r = render(&img, big);
        assert!(r.starts_with("-") && r.ends_with("...") && r.chars().count() == 200);
        let huge = img.int_digits("int", false, &[1; 100], img.l.clone());
        assert_eq!(render(&img, huge), "<int of 100 digits>");
        // Long type names are cut.
        let w = img.obj(&"N".repeat(300), 16);
        assert!(render(&img, w).len() <= 200);
    }

    #[test]
    fn render_containers() {
        let mut img = Img::new(13);
        let one = img.int(1);
        let s = img.str_("s");
        let t1 = img.tuple_(&[one]);
        assert_eq!(render(&img, t1), "(1,)");
        let t0 = img.tuple_(&[]);
        assert_eq!(render(&img, t0), "()");
        let l = img.list_(&[one, s, t1]);
        assert_eq!(render(&img, l), "[1, 's', (1,)]");
        let d = img.dict_(&[(s, l), (one, t0)], false);
        assert_eq!(render(&img, d), "{'s': [1, 's', (1,)], 1: ()}");
        // Depth: the fourth level of containers is elided.
        let deep = img.list_(&[d]);
        assert_eq!(render(&img, deep), "[{'s': [1, 's', (...)], 1: ()}]");
        // Many items: the first ten, then "...".
        let many: Vec<u64> = (0..50).map(|i| img.int(i)).collect();
        let ml = img.list_(&many);
        assert_eq!(render(&img, ml), "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]");
        let short = render_value(&img.mem, &img.l, ml, 16);
        assert!(
            short.chars().count() <= 16 && short.ends_with("...]"),
            "{short}"
        );
        // Long items never exceed the budget.
        let long = img.str_(&"y".repeat(500));
        let ll = img.list_(&[long, long, long]);
        let r = render(&img, ll);
        assert!(r.chars().count() <= 200 && r.ends_with("...]"), "{r}");
    }

    #[test]
    fn render_cycles_terminate() {
        let mut img = Img::new(12);
        let l = img.l.clone();
        let li = img.list_(&[0, 0]);
        let arr = img.mem.read_u64(li + l.list_item).unwrap();
        img.w64(arr, li);
        img.w64(arr + 8, li);
        let r = render(&img, li);
        assert_eq!(
            r,
            "[[[[...], [...]], [[...], [...]]], [[[...], [...]], [[...], [...]]]]"
        );
        // A dict containing itself.
        let k = img.str_("me");
        let d = img.dict_(&[(k, 0)], true);
        let keys = img.mem.read_u64(d + l.dict_keys).unwrap();
        let DictKeysModel::Log2 { dk_indices, .. } = l.dict_keys_model else {
            unreachable!()
        };
        img.w64(keys + dk_indices + 8 + 8, d);
        img.w64(d + l.dict_used, 1);
        assert_eq!(render(&img, d), "{'me': {'me': {'me': {...}}}}");
        // A list whose item pointer is garbage.
        let bad = img.list_(&[0xdead_0000, 0x18]);
        assert_eq!(
            render(&img, bad),
            "[<unreadable at 0xdead0000>, <unreadable at 0x18>]"
        );
    }
}
