//! Registry clients' side of passwordless auth.

pub mod ambient;
pub mod credentials;
pub mod login;
pub mod realm;

/// The registry host (`host[:port]`) of a server URL as docker passes it
/// (`127.0.0.1:5000`, `https://registry.example.com/v2/`, …).
pub fn registry_host(server_url: &str) -> String {
    let rest = server_url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(server_url);
    rest.split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts() {
        assert_eq!(super::registry_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(
            super::registry_host("https://Registry.example.com/v2/"),
            "registry.example.com"
        );
        assert_eq!(
            super::registry_host("http://localhost:5000"),
            "localhost:5000"
        );
    }
}
