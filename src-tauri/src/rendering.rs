//! How WebKitGTK paints the window on a machine without a GPU.

/// Without a GPU (no DRM render node: a VM, a container, Xvfb), WebKit's accelerated
/// compositing runs on Mesa's software GL (llvmpipe), which is slower than plain cairo
/// painting and costs about 80 MB more in the web process alone (measured with
/// `bench/app-startup.sh`). So there we ask for plain painting, before GTK starts. A user's
/// own `WEBKIT_DISABLE_COMPOSITING_MODE` (any value) wins, and machines with a GPU keep
/// compositing.
pub fn paint_without_gl_when_there_is_no_gpu() {
    const VAR: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";
    if cfg!(target_os = "linux") && std::env::var_os(VAR).is_none() && !has_render_node() {
        // Called first thing in `run`, before any other thread exists.
        std::env::set_var(VAR, "1");
    }
}

fn has_render_node() -> bool {
    std::fs::read_dir("/dev/dri").is_ok_and(|dir| {
        dir.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
    })
}
