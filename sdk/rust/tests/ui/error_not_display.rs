struct Failure;

#[nimbus_sdk::function]
fn handle(input: u32) -> Result<u32, Failure> {
    if input == 0 { Err(Failure) } else { Ok(input) }
}
