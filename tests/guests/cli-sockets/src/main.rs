//! Opens a TCP connection: the component imports `wasi:sockets`, which the
//! platform does not link, so the upload is refused naming that import.

fn main() {
    let connected = std::net::TcpStream::connect("127.0.0.1:9").is_ok();
    println!("{connected}");
}
