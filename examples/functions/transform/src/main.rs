//! JSON transform: a struct in, a struct out, and an error the caller sees.
//!
//! Build and deploy (from examples/functions):
//!
//! ```text
//! cargo build --release
//! nimbus deploy target/wasm32-wasip1/release/transform.wasm --name order-total
//! nimbus invoke <id> '{"customer": "ada", "items": [{"sku": "tea", "price_cents": 250, "quantity": 2}]}'
//! ```
//!
//! An order without items is refused with an error message; input that does
//! not match `Order` is refused by the SDK with serde's message.

use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Order {
    customer: String,
    items: Vec<Item>,
    #[serde(default)]
    discount_percent: u8,
}

#[derive(Deserialize)]
struct Item {
    sku: String,
    price_cents: u64,
    quantity: u32,
}

#[derive(Serialize)]
struct Invoice {
    customer: String,
    lines: Vec<Line>,
    subtotal_cents: u64,
    discount_cents: u64,
    total_cents: u64,
}

#[derive(Serialize)]
struct Line {
    sku: String,
    amount_cents: u64,
}

#[nimbus_sdk::function]
fn invoice(order: Order) -> Result<Invoice, String> {
    if order.items.is_empty() {
        return Err(format!("order for {} has no items", order.customer));
    }
    if order.discount_percent > 100 {
        return Err(format!("a discount of {}% is not possible", order.discount_percent));
    }
    let lines: Vec<Line> = order
        .items
        .iter()
        .map(|item| Line {
            sku: item.sku.clone(),
            amount_cents: item.price_cents * u64::from(item.quantity),
        })
        .collect();
    let subtotal_cents: u64 = lines.iter().map(|l| l.amount_cents).sum();
    let discount_cents = subtotal_cents * u64::from(order.discount_percent) / 100;
    Ok(Invoice {
        customer: order.customer,
        lines,
        subtotal_cents,
        discount_cents,
        total_cents: subtotal_cents - discount_cents,
    })
}
