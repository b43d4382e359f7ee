#[nimbus_sdk::function]
fn handle<T: serde::de::DeserializeOwned>(input: T) -> Result<u32, String> {
    let _ = input;
    Ok(1)
}
