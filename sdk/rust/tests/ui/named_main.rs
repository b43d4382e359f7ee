#[nimbus_sdk::function]
fn main(input: u32) -> Result<u32, String> {
    Ok(input)
}
