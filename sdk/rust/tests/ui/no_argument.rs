#[nimbus_sdk::function]
fn handle() -> Result<u32, String> {
    Ok(1)
}
