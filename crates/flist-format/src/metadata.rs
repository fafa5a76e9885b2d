//! The `metadata` table: raw string values by key, with typed accessors for the keys the
//! reference tool knows (`backend`, `entrypoint`, `environ`, `port`, `volume`, `readme`).
//!
//! Typed values are written as JSON text formatted the way the reference tool (jansson with
//! default flags) formats it: `", "` and `": "` separators, non-ASCII kept as UTF-8, control
//! characters escaped (`\n`, `\t`, ... or `\u00XX` with upper-case hex), keys in insertion
//! order. The same values therefore give the same bytes as the reference.

use indexmap::IndexMap;
use rusqlite::Connection;
use serde_json::Value;

use crate::error::FormatError;

/// Metadata key of the chunk backend.
pub const KEY_BACKEND: &str = "backend";
/// Metadata key of the entrypoint.
pub const KEY_ENTRYPOINT: &str = "entrypoint";
/// Metadata key of the environment.
pub const KEY_ENVIRON: &str = "environ";
/// Metadata key of the port map.
pub const KEY_PORT: &str = "port";
/// Metadata key of the volumes.
pub const KEY_VOLUME: &str = "volume";
/// Metadata key of the readme.
pub const KEY_README: &str = "readme";
/// Metadata key of the prefetch list: a JSON array of the paths of the files a first run
/// read, in the order it first opened them (`zflist mount --record-access`). Readers that
/// do not know it ignore it (any other key is a raw string to them); `mount` loads those
/// files' chunks in that order as soon as it is mounted.
pub const KEY_PREFETCH: &str = "prefetch";

pub use crate::backend::Backend;

/// One volume (`volume` map value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Volume {
    /// Host path mounted at the target, if any.
    pub host: Option<String>,
}

/// The `readme` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readme {
    /// Readme text.
    pub readme: String,
    /// License name, if any.
    pub license: Option<String>,
}

/// One row of an rfs `.fl` route table: blocks whose id starts with a byte in
/// `start..=end` are in the store at `url` (an rfs store URL: `dir://`, `zdb://`, `s3://`,
/// `http(s)://`). Several routes may cover a byte (replicas).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// First id byte covered.
    pub start: u8,
    /// Last id byte covered (inclusive).
    pub end: u8,
    /// The store's URL, as recorded (normally without password).
    pub url: String,
}

/// The metadata of an flist: key → raw TEXT value, in insertion order (the `metadata` table
/// of an `.flist`, the `tag` table of an `.fl`), and the route table of an `.fl`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: IndexMap<String, String>,
    /// The `.fl` route table (where its blocks are), in stored order; empty for an
    /// `.flist`, whose `backend` entry says where its chunks are. Written only to `.fl`.
    pub routes: Vec<Route>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Sets the raw value of `key` (keeps its position if it existed).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.entries.insert(key.into(), value.into());
    }

    /// Removes `key`, returning its raw value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.entries.shift_remove(key)
    }

    /// All entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no metadata.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn json(&self, key: &str) -> Result<Option<Value>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(s) => serde_json::from_str(s)
                .map(Some)
                .map_err(|e| FormatError::Metadata {
                    key: key.to_string(),
                    reason: format!("not valid JSON: {e}"),
                }),
        }
    }

    fn set_json(&mut self, key: &str, v: &Value) {
        self.set(key, to_reference_json(v));
    }

    /// The `backend` value, typed (see [`Backend`] for the accepted shapes).
    pub fn backend(&self) -> Result<Option<Backend>, FormatError> {
        self.get(KEY_BACKEND).map(Backend::parse).transpose()
    }

    /// Sets `backend` (the stored form, formatted like the reference tool).
    pub fn set_backend(&mut self, b: &Backend) {
        self.set(KEY_BACKEND, b.to_json());
    }

    /// The `entrypoint` argv.
    pub fn entrypoint(&self) -> Result<Option<Vec<String>>, FormatError> {
        self.string_array(KEY_ENTRYPOINT)
    }

    /// The value of `key` as a JSON array of strings.
    fn string_array(&self, key: &str) -> Result<Option<Vec<String>>, FormatError> {
        let Some(v) = self.json(key)? else {
            return Ok(None);
        };
        let bad = || FormatError::Metadata {
            key: key.into(),
            reason: "not a JSON array of strings".into(),
        };
        let arr = v.as_array().ok_or_else(bad)?;
        arr.iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// The prefetch list ([`KEY_PREFETCH`]): paths in first-access order.
    pub fn prefetch(&self) -> Result<Option<Vec<String>>, FormatError> {
        self.string_array(KEY_PREFETCH)
    }

    /// Sets the prefetch list ([`KEY_PREFETCH`]).
    pub fn set_prefetch(&mut self, paths: &[String]) {
        self.set_json(
            KEY_PREFETCH,
            &Value::Array(paths.iter().cloned().map(Value::from).collect()),
        );
    }

    /// Sets `entrypoint`.
    pub fn set_entrypoint(&mut self, argv: &[String]) {
        self.set_json(
            KEY_ENTRYPOINT,
            &Value::Array(argv.iter().cloned().map(Value::from).collect()),
        );
    }

    fn string_map(&self, key: &str) -> Result<Option<IndexMap<String, Value>>, FormatError> {
        let Some(v) = self.json(key)? else {
            return Ok(None);
        };
        match v {
            Value::Object(m) => Ok(Some(m.into_iter().collect())),
            _ => Err(FormatError::Metadata {
                key: key.into(),
                reason: "not a JSON object".into(),
            }),
        }
    }

    /// The `environ` map, in stored order.
    pub fn environ(&self) -> Result<Option<IndexMap<String, String>>, FormatError> {
        let Some(m) = self.string_map(KEY_ENVIRON)? else {
            return Ok(None);
        };
        m.into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                _ => Err(FormatError::Metadata {
                    key: KEY_ENVIRON.into(),
                    reason: format!("value of {k:?} is not a string"),
                }),
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Sets `environ`.
    pub fn set_environ(&mut self, env: &IndexMap<String, String>) {
        let m = env
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        self.set_json(KEY_ENVIRON, &Value::Object(m));
    }

    /// The `port` map (`"tcp/80"` → host port).
    pub fn ports(&self) -> Result<Option<IndexMap<String, i64>>, FormatError> {
        let Some(m) = self.string_map(KEY_PORT)? else {
            return Ok(None);
        };
        m.into_iter()
            .map(|(k, v)| match v.as_i64() {
                Some(n) => Ok((k, n)),
                None => Err(FormatError::Metadata {
                    key: KEY_PORT.into(),
                    reason: format!("value of {k:?} is not an integer"),
                }),
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Sets `port`.
    pub fn set_ports(&mut self, ports: &IndexMap<String, i64>) {
        let m = ports
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(*v)))
            .collect();
        self.set_json(KEY_PORT, &Value::Object(m));
    }

    /// The `volume` map (target → volume).
    pub fn volumes(&self) -> Result<Option<IndexMap<String, Volume>>, FormatError> {
        let Some(m) = self.string_map(KEY_VOLUME)? else {
            return Ok(None);
        };
        let bad = |k: &str| FormatError::Metadata {
            key: KEY_VOLUME.into(),
            reason: format!("value of {k:?} is not an object with an optional string \"host\""),
        };
        m.into_iter()
            .map(|(k, v)| {
                let o = v.as_object().ok_or_else(|| bad(&k))?;
                let host = match o.get("host") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err(bad(&k)),
                };
                Ok((k, Volume { host }))
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Sets `volume`.
    pub fn set_volumes(&mut self, vols: &IndexMap<String, Volume>) {
        let m = vols
            .iter()
            .map(|(k, v)| {
                let mut o = serde_json::Map::new();
                if let Some(h) = &v.host {
                    o.insert("host".into(), Value::from(h.clone()));
                }
                (k.clone(), Value::Object(o))
            })
            .collect();
        self.set_json(KEY_VOLUME, &Value::Object(m));
    }

    /// The `readme` value.
    pub fn readme(&self) -> Result<Option<Readme>, FormatError> {
        let Some(v) = self.json(KEY_README)? else {
            return Ok(None);
        };
        let bad = |r: &str| FormatError::Metadata {
            key: KEY_README.into(),
            reason: r.into(),
        };
        let o = v.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let readme = o
            .get("readme")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no string \"readme\""))?;
        let license = match o.get("license") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("\"license\" is not a string")),
        };
        Ok(Some(Readme {
            readme: readme.to_string(),
            license,
        }))
    }

    /// Sets `readme`.
    pub fn set_readme(&mut self, r: &Readme) {
        let mut o = serde_json::Map::new();
        o.insert("readme".into(), Value::from(r.readme.clone()));
        if let Some(l) = &r.license {
            o.insert("license".into(), Value::from(l.clone()));
        }
        self.set_json(KEY_README, &Value::Object(o));
    }

    /// Reads the `metadata` table of a catalog; a database without one has empty metadata.
    pub fn read(conn: &Connection, what: &str) -> Result<Metadata, FormatError> {
        let exists: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'metadata'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| {
                FormatError::sqlite(format!("{what}: looking for the metadata table"), e)
            })?;
        let mut md = Metadata::new();
        if !exists {
            return Ok(md);
        }
        md.read_pairs(
            conn,
            "SELECT key, value FROM metadata ORDER BY rowid",
            &format!("{what}: reading metadata"),
        )?;
        Ok(md)
    }

    /// Adds the (key, value) rows `sql` selects (text; a blob must be UTF-8), in order: the
    /// `metadata` table of an `.flist`, the `tag` table of an `.fl`.
    pub(crate) fn read_pairs(
        &mut self,
        conn: &Connection,
        sql: &str,
        what: &str,
    ) -> Result<(), FormatError> {
        let err = |e| FormatError::sqlite(what, e);
        let mut st = conn.prepare(sql).map_err(err)?;
        let mut rows = st.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let key =
                value_text(row.get_ref(0).map_err(err)?).ok_or_else(|| FormatError::Metadata {
                    key: "?".into(),
                    reason: "key is not text".into(),
                })?;
            let value =
                value_text(row.get_ref(1).map_err(err)?).ok_or_else(|| FormatError::Metadata {
                    key: key.clone(),
                    reason: "value is not UTF-8 text".into(),
                })?;
            self.set(key, value);
        }
        Ok(())
    }

    /// Replaces the `metadata` table's content (creating the table if missing).
    pub fn write(&self, conn: &Connection, what: &str) -> Result<(), FormatError> {
        let err = |e| FormatError::sqlite(format!("{what}: writing metadata"), e);
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS metadata (key VARCHAR(64) PRIMARY KEY, value TEXT); DELETE FROM metadata;",
        )
        .map_err(err)?;
        let mut st = conn
            .prepare("INSERT INTO metadata (key, value) VALUES (?1, ?2)")
            .map_err(err)?;
        for (k, v) in self.iter() {
            st.execute([k, v]).map_err(err)?;
        }
        Ok(())
    }
}

/// A cell as text (numbers formatted, NULL empty); `None` for a blob that is not UTF-8.
pub(crate) fn value_text(v: rusqlite::types::ValueRef<'_>) -> Option<String> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => std::str::from_utf8(t).ok().map(str::to_string),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Null => Some(String::new()),
    }
}

/// Formats a JSON value the way the reference tool (jansson, default flags) does:
/// `{"a": 1, "b": [1, 2]}`.
pub fn to_reference_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, v);
    out
}

fn write_json(out: &mut String, v: &Value) {
    // Iterative would be overkill: metadata values are shallow and produced by this crate or
    // parsed by serde_json (which limits nesting to 128).
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(out, k);
                out.push_str(": ");
                write_json(out, x);
            }
            out.push('}');
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_formatting() {
        let mut m = Metadata::new();
        m.set_backend(&Backend::zdb("127.0.0.1", 9901, None));
        assert_eq!(
            m.get("backend"),
            Some(r#"{"host": "127.0.0.1", "port": 9901}"#)
        );
        m.set_readme(&Readme {
            readme: "a\n\u{1}é\"".into(),
            license: Some("MIT".into()),
        });
        assert_eq!(
            m.get("readme"),
            Some("{\"readme\": \"a\\n\\u0001é\\\"\", \"license\": \"MIT\"}")
        );
        assert_eq!(m.readme().unwrap().unwrap().readme, "a\n\u{1}é\"");
        m.set("backend", "not json");
        assert!(matches!(m.backend(), Err(FormatError::Metadata { .. })));
    }

    #[test]
    fn prefetch_list() {
        let mut m = Metadata::new();
        assert_eq!(m.prefetch().unwrap(), None);
        let paths = vec!["/bin/sh".to_string(), "/etc/ünïcode \"q\"".to_string()];
        m.set_prefetch(&paths);
        assert_eq!(
            m.get(KEY_PREFETCH),
            Some("[\"/bin/sh\", \"/etc/ünïcode \\\"q\\\"\"]")
        );
        assert_eq!(m.prefetch().unwrap(), Some(paths));
        m.set(KEY_PREFETCH, "{\"not\": \"a list\"}");
        let e = m.prefetch().unwrap_err().to_string();
        assert!(e.contains("prefetch") && e.contains("array"), "{e}");
    }
}
