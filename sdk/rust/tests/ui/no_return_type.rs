#[nimbus_sdk::function]
fn handle(input: u32) {
    let _ = input;
}
