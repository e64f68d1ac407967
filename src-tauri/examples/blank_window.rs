//! The floor for `bench/app-startup.sh`: the same Tauri and WebKitGTK, the same window
//! size and painting choice, showing a one-line page instead of Conclave. What this costs
//! is what any Tauri app pays on this machine before it does anything.

const PAGE: &str = "<!doctype html><html><body><p>blank</p></body></html>";

fn main() {
    conclave_app::rendering::paint_without_gl_when_there_is_no_gpu();
    let mut context = tauri::generate_context!();
    context.config_mut().app.windows.clear();
    let result = tauri::Builder::default()
        .register_uri_scheme_protocol("blank", |_, _| {
            tauri::http::Response::builder()
                .header("Content-Type", "text/html")
                .body(PAGE.as_bytes().to_vec())
                .unwrap_or_default()
        })
        .setup(|app| {
            let page = "blank://localhost/".parse()?;
            tauri::WebviewWindowBuilder::new(app, "blank", tauri::WebviewUrl::CustomProtocol(page))
                .title("Conclave")
                .inner_size(1200.0, 800.0)
                .on_page_load(|_, payload| {
                    if payload.event() == tauri::webview::PageLoadEvent::Finished {
                        eprintln!("blank page loaded");
                    }
                })
                .build()?;
            Ok(())
        })
        .run(context);
    if let Err(e) = result {
        eprintln!("the window could not start: {e}");
        std::process::exit(1);
    }
}
