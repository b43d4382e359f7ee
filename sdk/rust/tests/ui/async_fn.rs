#[nimbus_sdk::function]
async fn handle(input: u32) -> Result<u32, String> {
    Ok(input)
}
