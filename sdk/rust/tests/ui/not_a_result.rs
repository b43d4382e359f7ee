#[nimbus_sdk::function]
fn handle(input: u32) -> u32 {
    input
}
