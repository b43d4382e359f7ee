struct Opaque;

#[nimbus_sdk::function]
fn handle(input: Opaque) -> Result<u32, String> {
    let _ = input;
    Ok(1)
}
