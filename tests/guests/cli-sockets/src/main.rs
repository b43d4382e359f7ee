//! Tries to open a TCP connection: the component imports `wasi:sockets`,
//! which the platform links with every use denied, so it prints `false`.

fn main() {
    let connected = std::net::TcpStream::connect("127.0.0.1:9").is_ok();
    println!("{connected}");
}
