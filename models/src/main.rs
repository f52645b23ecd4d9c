fn main() {
    println!("sparsegrad");
}
