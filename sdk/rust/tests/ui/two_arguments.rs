#[nimbus_sdk::function]
fn handle(a: u32, b: u32) -> Result<u32, String> {
    Ok(a + b)
}
