//! The frame around every page (header, navigation, the live-refresh
//! switch), the `?fragment=1` form that holds only the `<main>` content,
//! the error pages and the embedded assets.

use super::html::escape;
use weir_web::Page;

/// The script that refreshes `<main>` every 2 s while the tab is visible.
const SCRIPT: &str = include_str!("assets/weir.js");
/// The stylesheet of every page and chart.
const STYLE: &str = include_str!("assets/weir.css");

/// What a page shows, before the frame is put around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The browser tab's title (plain text).
    pub title: String,
    /// The content of `<main>` (HTML).
    pub body: String,
    /// Whether the page changes while it is open, so the script refreshes
    /// it (a committed batch's page never changes).
    pub live: bool,
}

/// What the frame shows beside a page: who is signed in and what this
/// replica is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// The signed-in client's name, when there is one to sign out.
    pub signed_in: Option<String>,
    /// HTML shown above every page's content (a follower's notice).
    pub notice: String,
    /// Whether there is a cluster to link to (not in `weir local`).
    pub cluster: bool,
}

/// The response for `view` with HTTP `status`: the whole page, or with
/// `fragment` only the content of its `<main>`, for the script to swap in.
pub fn render(view: &View, frame: &Frame, status: u16, fragment: bool) -> Page {
    let main = format!("{}{}", frame.notice, view.body);
    let body = if fragment {
        main
    } else {
        let live = if view.live { " data-live=\"2000\"" } else { "" };
        let cluster = if frame.cluster {
            "<a href=\"/cluster\">Cluster</a>"
        } else {
            ""
        };
        let session = match &frame.signed_in {
            Some(name) => format!(
                "<form class=\"session\" method=\"post\" action=\"/logout\"><span>{}</span> <button type=\"submit\">Sign out</button></form>",
                escape(name)
            ),
            None => String::new(),
        };
        let switch = if view.live {
            "<button id=\"live\" class=\"live\" type=\"button\" title=\"Refreshes every 2 s; click to pause\">live</button>"
        } else {
            ""
        };
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{} · Weir</title><link rel=\"icon\" href=\"data:,\">\
             <link rel=\"stylesheet\" href=\"/assets/weir.css\">\
             <script src=\"/assets/weir.js\" defer></script></head>\n<body>\
             <header><a class=\"brand\" href=\"/\">Weir</a><nav><a href=\"/\">Jobs</a>{cluster}</nav>{switch}{session}</header>\n\
             <main id=\"main\"{live}>{main}</main>\n</body></html>\n",
            escape(&view.title)
        )
    };
    Page {
        status,
        content_type: "text/html; charset=utf-8",
        body: body.into_bytes(),
    }
}

/// The page for a failure to read the metadata (HTTP 503): the message,
/// and that the page retries by itself.
pub fn unavailable(message: &str) -> View {
    View {
        title: "Unavailable".into(),
        body: format!(
            "<h1>Unavailable</h1><p class=\"error\">The driver could not read what this page shows: {}</p>\
             <p>The page tries again every 2 s.</p>",
            escape(message)
        ),
        live: true,
    }
}

/// The page for a job or batch that is not there (HTTP 404).
pub fn not_found(message: &str) -> View {
    View {
        title: "Not found".into(),
        body: format!(
            "<h1>Not found</h1><p>{}</p><p><a href=\"/\">All jobs</a></p>",
            escape(message)
        ),
        live: true,
    }
}

/// An embedded asset by its path under `/assets/`.
pub fn asset(name: &str) -> Option<Page> {
    match name {
        "weir.js" => Some(Page::asset(
            "text/javascript; charset=utf-8",
            SCRIPT.as_bytes(),
        )),
        "weir.css" => Some(Page::asset("text/css; charset=utf-8", STYLE.as_bytes())),
        _ => None,
    }
}
