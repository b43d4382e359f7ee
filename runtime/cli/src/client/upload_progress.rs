//! The progress bar of `nimbus deploy` for big uploads.

/// A progress bar on stderr for an upload big enough to wait for: bytes
/// sent, then a spinner while the server compiles. Nothing is drawn when
/// stderr is not a terminal.
pub(super) struct UploadProgress(Option<indicatif::ProgressBar>);

impl UploadProgress {
    /// Uploads smaller than this go without a bar.
    const SHOWN_FROM: usize = 256 << 10;
    const CHUNK: usize = 64 << 10;

    pub(super) fn new(bytes: usize) -> Self {
        use std::io::IsTerminal;
        if bytes < Self::SHOWN_FROM || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(bytes as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "uploading {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self(Some(bar))
    }

    /// `bytes` as a request body that moves the bar as it is sent, and
    /// turns it into a spinner once all is sent.
    pub(super) fn body(&self, bytes: Vec<u8>) -> reqwest::Body {
        let Some(bar) = self.0.clone() else {
            return bytes.into();
        };
        let bytes = bytes::Bytes::from(bytes);
        let len = bytes.len();
        let chunks = (0..len)
            .step_by(Self::CHUNK)
            .map(move |at| bytes.slice(at..(at + Self::CHUNK).min(len)));
        reqwest::Body::wrap_stream(futures::stream::iter(chunks.map(move |chunk| {
            bar.inc(chunk.len() as u64);
            if bar.position() == bar.length().unwrap_or_default() {
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.set_message("uploaded; the server is validating and compiling it");
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
            }
            Ok::<_, std::io::Error>(chunk)
        })))
    }

    pub(super) fn finish(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}
