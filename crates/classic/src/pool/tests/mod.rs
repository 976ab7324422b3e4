//! The engine handle against dead and misbehaving addresses (`offline`) and against the
//! real local engine (`live`).

use crate::discovery::EngineAddr;

mod live;
mod members;
mod offline;

fn tcp(port: u16) -> EngineAddr {
    EngineAddr::Tcp {
        host: "127.0.0.1".to_owned(),
        port,
    }
}
mod settle;
