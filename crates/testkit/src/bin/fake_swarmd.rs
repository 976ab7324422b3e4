//! A stand-in for `swarmd`, used only by swarmd-testkit's own tests so the [`Daemon`] helpers
//! can be exercised without (and before) the real binary.
//!
//! It accepts swarmd's command line, binds the `-H unix://PATH` socket (replacing a stale one,
//! as a restarted daemon must), logs each request line to stdout and answers every request with
//! `200 OK` and body `OK`, the way `GET /_ping` does. SIGTERM keeps its default action.
//!
//! [`Daemon`]: swarmd_testkit::Daemon

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("fake-swarmd args: {}", args.join(" "));
    let host = args
        .windows(2)
        .find(|w| w[0] == "-H")
        .map(|w| w[1].as_str())
        .expect("-H unix://PATH is required");
    let path = host
        .strip_prefix("unix://")
        .expect("-H must be unix://PATH");

    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).expect("bind the API socket");
    println!("fake-swarmd listening on {path}");

    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let mut reader = BufReader::new(&stream);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            continue;
        }
        println!("request: {}", request_line.trim_end());
        // Skip the headers; request bodies are ignored (the connection is closed after).
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(0) | Err(_) => break,
                Ok(_) if header == "\r\n" || header == "\n" => break,
                Ok(_) => {}
            }
        }
        let _ = (&stream).write_all(
            b"HTTP/1.1 200 OK\r\nApi-Version: 1.50\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 2\r\nConnection: close\r\n\r\nOK",
        );
    }
}
