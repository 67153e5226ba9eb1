//! Writes the `Codec::Primed` prior (`shared/src/codec/prior_table.in`)
//! from its training (`donut_shared::codec::prior::train`).
//!
//! `cargo run -p donut-shared --example codec_prior`; the unit test
//! `codec::tests::the_prior_is_its_training` fails until the table matches.

fn main() -> std::io::Result<()> {
    let table = donut_shared::codec::prior::train();
    let mut out = String::from("[\n");
    for row in table.chunks(16) {
        let cells: Vec<String> = row.iter().map(u8::to_string).collect();
        out.push_str("    ");
        out.push_str(&cells.join(", "));
        out.push_str(",\n");
    }
    out.push_str("]\n");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/codec/prior_table.in");
    std::fs::write(path, out)?;
    println!("wrote {} probabilities to {path}", table.len());
    Ok(())
}
