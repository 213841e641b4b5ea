//! A minimal Thrift binary-protocol writer (just what `jaeger.thrift` needs).

/// Thrift type ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TType {
    /// bool
    Bool = 2,
    /// double
    Double = 4,
    /// i32
    I32 = 8,
    /// i64
    I64 = 10,
    /// string / binary
    String = 11,
    /// struct
    Struct = 12,
    /// list
    List = 15,
}

/// Appends Thrift binary-protocol values to a buffer.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// Write into `out` (appending).
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }

    /// A field header: type and id.
    pub fn field(&mut self, ty: TType, id: i16) {
        self.out.push(ty as u8);
        self.out.extend_from_slice(&id.to_be_bytes());
    }

    /// The end of a struct.
    pub fn stop(&mut self) {
        self.out.push(0);
    }

    /// A list header: element type and length.
    pub fn list(&mut self, elem: TType, len: usize) {
        self.out.push(elem as u8);
        let len = i32::try_from(len).unwrap_or(i32::MAX);
        self.out.extend_from_slice(&len.to_be_bytes());
    }

    /// A bool value.
    pub fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    /// An i32 value.
    pub fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// An i64 value.
    pub fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// A double value.
    pub fn double(&mut self, v: f64) {
        self.out.extend_from_slice(&v.to_bits().to_be_bytes());
    }

    /// A string value (length-prefixed UTF-8).
    pub fn string(&mut self, v: &str) {
        let len = i32::try_from(v.len()).unwrap_or(i32::MAX);
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(&v.as_bytes()[..len as usize]);
    }

    /// Field helpers.
    pub fn field_i64(&mut self, id: i16, v: i64) {
        self.field(TType::I64, id);
        self.i64(v);
    }
    /// An i32 field.
    pub fn field_i32(&mut self, id: i16, v: i32) {
        self.field(TType::I32, id);
        self.i32(v);
    }
    /// A string field.
    pub fn field_string(&mut self, id: i16, v: &str) {
        self.field(TType::String, id);
        self.string(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_binary_protocol() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.field_i64(1, -2);
        w.field_string(5, "op");
        w.field(TType::List, 10);
        w.list(TType::Struct, 0);
        w.field(TType::Bool, 3);
        w.bool(true);
        w.field(TType::Double, 4);
        w.double(1.5);
        w.stop();
        let mut expect = vec![10, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe];
        expect.extend_from_slice(&[11, 0, 5, 0, 0, 0, 2, b'o', b'p']);
        expect.extend_from_slice(&[15, 0, 10, 12, 0, 0, 0, 0]);
        expect.extend_from_slice(&[2, 0, 3, 1]);
        expect.extend_from_slice(&[4, 0, 4]);
        expect.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        expect.push(0);
        assert_eq!(out, expect);
    }
}
