//! The space-separated fields of the `Nimbus-Call` and `Nimbus-Reply`
//! headers (`call.rs`), read one by one after the envelope version.

use super::call::{ENVELOPE_VERSION, EnvelopeError};

/// The optional fields at the end of a call's header.
pub(super) struct Trailer {
    pub(super) env_len: Option<u64>,
    pub(super) outbound: Vec<String>,
    pub(super) kv: Option<String>,
    pub(super) http: Option<u64>,
}

/// The space-separated fields of a header, after its version.
pub(super) struct Fields<'a> {
    header: &'a str,
    fields: std::iter::Peekable<std::str::Split<'a, char>>,
}

impl<'a> Fields<'a> {
    pub(super) fn new(header: Option<&'a str>) -> Result<Self, EnvelopeError> {
        let Some(header) = header else {
            return Err(EnvelopeError::Version { found: None });
        };
        let mut fields = header.split(' ');
        match fields.next() {
            Some(ENVELOPE_VERSION) => Ok(Self {
                header,
                fields: fields.peekable(),
            }),
            found => Err(EnvelopeError::Version {
                found: found.map(|v| v.chars().take(20).collect()),
            }),
        }
    }

    pub(super) fn next(&mut self, field: &'static str) -> Result<&'a str, EnvelopeError> {
        match self.fields.next() {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(self.malformed(field)),
        }
    }

    pub(super) fn number(&mut self, field: &'static str) -> Result<u64, EnvelopeError> {
        self.next(field)?.parse().map_err(|_| self.malformed(field))
    }

    /// The optional trailing ` http <head_len>`, and the end.
    pub(super) fn http(&mut self) -> Result<Option<u64>, EnvelopeError> {
        let http = self.optional_number("http", "http head_len")?;
        self.end()?;
        Ok(http)
    }

    /// A call's optional ` env <len>`, ` out <hosts>`, ` kv <grant>` and
    /// ` http <head_len>`, in that order, and the end.
    pub(super) fn call_trailer(&mut self) -> Result<Trailer, EnvelopeError> {
        let env_len = self.optional_number("env", "env len")?;
        let outbound = match self.fields.next_if_eq(&"out") {
            None => Vec::new(),
            Some(_) => self
                .next("out hosts")?
                .split(',')
                .map(str::to_owned)
                .collect(),
        };
        let kv = match self.fields.next_if_eq(&"kv") {
            None => None,
            Some(_) => Some(self.next("kv grant")?.to_owned()),
        };
        let http = self.http()?;
        Ok(Trailer {
            env_len,
            outbound,
            kv,
            http,
        })
    }

    /// ` <name> <number>` if the next field is `name`.
    fn optional_number(
        &mut self,
        name: &'static str,
        field: &'static str,
    ) -> Result<Option<u64>, EnvelopeError> {
        match self.fields.next_if_eq(&name) {
            None => Ok(None),
            Some(_) => self.number(field).map(Some),
        }
    }

    pub(super) fn end(&mut self) -> Result<(), EnvelopeError> {
        match self.fields.next() {
            None => Ok(()),
            Some(_) => Err(self.malformed("end")),
        }
    }

    pub(super) fn malformed(&self, field: &'static str) -> EnvelopeError {
        EnvelopeError::Malformed {
            field,
            header: self.header.chars().take(200).collect(),
        }
    }
}
