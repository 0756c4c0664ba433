//! A minimal client of BIRD's control socket (the protocol `birdc`
//! speaks): one connection per command, replies read up to the final line.
//!
//! Reply lines are `NNNN-text` (more follows), ` text` (continuation of the
//! previous code) or `NNNN text` (last line). Codes 8000–9999 are errors.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors talking to BIRD.
#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    /// The socket could not be reached or the connection broke.
    #[error("BIRD control socket {}: {source}", .path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// BIRD answered with an error code.
    #[error("BIRD refused `{command}`: {code} {text}")]
    Refused {
        /// The command sent.
        command: String,
        /// BIRD's reply code.
        code: u16,
        /// BIRD's message.
        text: String,
    },
    /// The reply was not in BIRD's format.
    #[error("BIRD sent an unexpected reply to `{command}`: {line:?}")]
    Protocol {
        /// The command sent.
        command: String,
        /// The offending line.
        line: String,
    },
}

/// One reply: its lines as (code, text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub lines: Vec<(u16, String)>,
}

/// A BIRD control socket.
#[derive(Debug, Clone)]
pub(crate) struct Bird {
    path: PathBuf,
    timeout: Duration,
}

impl Bird {
    /// Talk to the socket at `path`; every read and write is bounded by
    /// `timeout`, so a hung BIRD cannot hang the caller.
    pub fn new(path: &Path, timeout: Duration) -> Self {
        Bird {
            path: path.to_owned(),
            timeout,
        }
    }

    fn io(&self, source: std::io::Error) -> BirdError {
        BirdError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Send one command and read its whole reply.
    pub fn command(&self, command: &str) -> Result<Reply, BirdError> {
        let stream = UnixStream::connect(&self.path).map_err(|e| self.io(e))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| self.io(e))?;
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| self.io(e))?);
        // The greeting: "0001 BIRD 2.x ready."
        let hello = read_reply(&mut reader, command).map_err(|e| e.into_bird(self))?;
        if hello.lines.first().map(|l| l.0) != Some(1) {
            return Err(BirdError::Protocol {
                command: command.into(),
                line: format!("{:?}", hello.lines.first()),
            });
        }
        (&stream)
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| self.io(e))?;
        let reply = read_reply(&mut reader, command).map_err(|e| e.into_bird(self))?;
        if let Some((code, text)) = reply.lines.iter().find(|(c, _)| *c >= 8000) {
            return Err(BirdError::Refused {
                command: command.into(),
                code: *code,
                text: text.clone(),
            });
        }
        Ok(reply)
    }

    /// Enable (`true`) or disable the protocol `name`; `Ok(true)` when the
    /// state changed, `Ok(false)` when it already was so.
    pub fn set_enabled(&self, name: &str, on: bool) -> Result<bool, BirdError> {
        let verb = if on { "enable" } else { "disable" };
        let command = format!("{verb} \"{name}\"");
        let reply = self.command(&command)?;
        let text: Vec<&str> = reply.lines.iter().map(|(_, t)| t.as_str()).collect();
        let word = if on { "enabled" } else { "disabled" };
        if text.iter().any(|t| t.ends_with(&format!("already {word}"))) {
            Ok(false)
        } else if text.iter().any(|t| t.ends_with(word)) {
            Ok(true)
        } else {
            Err(BirdError::Protocol {
                command,
                line: text.join(" / "),
            })
        }
    }
}

enum ReadError {
    Io(std::io::Error),
    Protocol(String, String),
}

impl ReadError {
    fn into_bird(self, b: &Bird) -> BirdError {
        match self {
            ReadError::Io(e) => b.io(e),
            ReadError::Protocol(command, line) => BirdError::Protocol { command, line },
        }
    }
}

/// Read lines up to the last one of a reply (`NNNN text`). At most 10,000
/// lines: a reply that never ends is a protocol error, not a hang.
fn read_reply(r: &mut impl BufRead, command: &str) -> Result<Reply, ReadError> {
    let mut lines = Vec::new();
    let mut last_code = 0;
    for _ in 0..10_000 {
        let mut line = String::new();
        let n = r.read_line(&mut line).map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a reply",
            )));
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if let Some(rest) = line.strip_prefix(' ') {
            lines.push((last_code, rest.to_string()));
            continue;
        }
        let bad = || ReadError::Protocol(command.into(), line.to_string());
        let (code, sep, text) = match (line.get(..4), line.get(4..5), line.get(5..)) {
            (Some(c), Some(s), t) => (c.parse::<u16>().map_err(|_| bad())?, s, t.unwrap_or("")),
            (Some(c), None, _) => (c.parse::<u16>().map_err(|_| bad())?, " ", ""),
            _ => return Err(bad()),
        };
        last_code = code;
        lines.push((code, text.to_string()));
        match sep {
            "-" => {}
            " " => return Ok(Reply { lines }),
            _ => return Err(bad()),
        }
    }
    Err(ReadError::Protocol(command.into(), "reply too long".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A scripted BIRD: greets, then answers each command line from `reply`.
    fn fake_bird(
        reply: impl Fn(&str) -> String + Send + 'static,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        std::thread::JoinHandle<Vec<String>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bird.ctl");
        let listener = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            // One command per connection, as the client does; three clients.
            for _ in 0..3 {
                let (mut s, _) = listener.accept().unwrap();
                s.write_all(b"0001 BIRD 2.0.12 ready.\n").unwrap();
                let mut line = String::new();
                BufReader::new(s.try_clone().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                let cmd = line.trim_end().to_string();
                s.write_all(reply(&cmd).as_bytes()).unwrap();
                seen.push(cmd);
            }
            seen
        });
        (dir, path, t)
    }

    #[test]
    fn enables_disables_and_reports_refusals() {
        let (_dir, path, t) = fake_bird(|cmd| match cmd {
            "enable \"anycast\"" => "0011-anycast: enabled\n0000 \n".into(),
            "disable \"anycast\"" => "0008-anycast: already disabled\n0000 \n".into(),
            _ => "9001 syntax error, unexpected CF_SYM_UNDEFINED\n".into(),
        });
        let b = Bird::new(&path, Duration::from_secs(5));
        assert!(b.set_enabled("anycast", true).unwrap());
        assert!(!b.set_enabled("anycast", false).unwrap());
        let err = b.set_enabled("nosuch", true).unwrap_err().to_string();
        assert!(err.contains("9001 syntax error"), "{err}");
        assert_eq!(
            t.join().unwrap(),
            vec![
                "enable \"anycast\"",
                "disable \"anycast\"",
                "enable \"nosuch\""
            ]
        );
    }

    #[test]
    fn parses_multi_line_replies() {
        let text = "2002-Name Proto\n1002-steerdns Static master4 up\n extra line\n0000 \n";
        let r = read_reply(&mut text.as_bytes(), "show protocols")
            .ok()
            .unwrap();
        assert_eq!(
            r.lines,
            vec![
                (2002, "Name Proto".to_string()),
                (1002, "steerdns Static master4 up".to_string()),
                (1002, "extra line".to_string()),
                (0, String::new()),
            ]
        );
        assert!(read_reply(&mut "garbage\n".as_bytes(), "x").is_err());
        assert!(read_reply(&mut "0001-half".as_bytes(), "x").is_err());
    }

    #[test]
    fn a_missing_socket_is_an_error_naming_it() {
        let b = Bird::new(Path::new("/nonexistent/bird.ctl"), Duration::from_secs(1));
        let err = b.set_enabled("x", false).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/bird.ctl"), "{err}");
    }
}
