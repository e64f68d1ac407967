fn main() {
    conclave_app::run()
}
