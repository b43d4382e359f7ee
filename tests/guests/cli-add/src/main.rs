//! A `wasi:cli/command` component: reads a JSON number on stdin, writes that
//! number plus one on stdout. A line on stderr is a log; a non-number exits 1.

use std::io::Read;

fn main() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("stdin");
    eprintln!("cli-add got {} bytes", input.len());
    match input.trim().parse::<i64>() {
        Ok(n) => println!("{}", n + 1),
        Err(_) => {
            eprintln!("expected a number, got {input:?}");
            std::process::exit(1);
        }
    }
}
