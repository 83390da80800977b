//! Who a verified client certificate names: its subject's Common Name, or, when the subject has
//! no CN, the whole subject rendered as an RFC 4514 string (`O=Bank,C=CH`). The certificate was
//! verified by rustls before this runs; parsing only reads the subject out of it.

use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Encode, Reader, SliceReader, Tag, Tagged};

/// id-at-commonName.
const COMMON_NAME: &str = "2.5.4.3";

/// RFC 4514 §3: the attribute types written by short name; any other is written as its OID.
const SHORT_NAMES: &[(&str, &str)] = &[
    (COMMON_NAME, "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// One attribute of a relative distinguished name.
struct Attribute {
    oid: String,
    value: AttributeValue,
}

enum AttributeValue {
    Text(String),
    /// Not a string type: RFC 4514 writes it as `#` and the hex of its DER encoding.
    Der(Vec<u8>),
}

/// The identity of a certificate (DER): the last (most specific) CN, else the RFC 4514 subject.
/// `None` when the certificate cannot be read or its subject is empty.
pub fn identity_of(cert: &[u8]) -> Option<String> {
    let rdns = match subject_rdns(cert) {
        Ok(rdns) => rdns,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the client certificate's subject");
            return None;
        }
    };
    let common_name = rdns
        .iter()
        .flatten()
        .rev()
        .filter(|a| a.oid == COMMON_NAME)
        .find_map(|a| match &a.value {
            AttributeValue::Text(text) if !text.is_empty() => Some(text.clone()),
            _ => None,
        });
    common_name.or_else(|| Some(rfc4514(&rdns)).filter(|s| !s.is_empty()))
}

/// The subject's RDNs, in certificate order (most general first).
fn subject_rdns(cert: &[u8]) -> der::Result<Vec<Vec<Attribute>>> {
    let certificate = AnyRef::from_der(cert)?;
    certificate.tag().assert_eq(Tag::Sequence)?;
    let mut certificate = SliceReader::new(certificate.value())?;
    let tbs: AnyRef<'_> = certificate.decode()?;
    tbs.tag().assert_eq(Tag::Sequence)?;
    let mut tbs = SliceReader::new(tbs.value())?;
    // TBSCertificate: [0] version (absent in v1), serialNumber, signature, issuer, validity,
    // subject, ...
    let first: AnyRef<'_> = tbs.decode()?;
    if first.tag().is_context_specific() {
        let _serial: AnyRef<'_> = tbs.decode()?;
    }
    let _signature: AnyRef<'_> = tbs.decode()?;
    let _issuer: AnyRef<'_> = tbs.decode()?;
    let _validity: AnyRef<'_> = tbs.decode()?;
    let subject: AnyRef<'_> = tbs.decode()?;
    subject.tag().assert_eq(Tag::Sequence)?;
    let mut names = SliceReader::new(subject.value())?;
    let mut rdns = Vec::new();
    while !names.is_finished() {
        let set: AnyRef<'_> = names.decode()?;
        set.tag().assert_eq(Tag::Set)?;
        let mut set = SliceReader::new(set.value())?;
        let mut rdn = Vec::new();
        while !set.is_finished() {
            let pair: AnyRef<'_> = set.decode()?;
            pair.tag().assert_eq(Tag::Sequence)?;
            let mut pair = SliceReader::new(pair.value())?;
            let oid: ObjectIdentifier = pair.decode()?;
            let value: AnyRef<'_> = pair.decode()?;
            rdn.push(Attribute {
                oid: oid.to_string(),
                value: attribute_value(value)?,
            });
        }
        rdns.push(rdn);
    }
    Ok(rdns)
}

fn attribute_value(value: AnyRef<'_>) -> der::Result<AttributeValue> {
    let text = match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString
        | Tag::TeletexString => String::from_utf8(value.value().to_vec()).ok(),
        Tag::BmpString => {
            let units: Vec<u16> = value
                .value()
                .chunks(2)
                .map(|pair| match pair {
                    [high, low] => u16::from_be_bytes([*high, *low]),
                    // An odd trailing byte: U+FFFD, the replacement character.
                    _ => 0xFFFD,
                })
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    };
    Ok(match text {
        Some(text) => AttributeValue::Text(text),
        None => AttributeValue::Der(value.to_der()?),
    })
}

/// RFC 4514 §2: RDNs from the last to the first, separated by `,`; attributes of one RDN joined
/// by `+`.
fn rfc4514(rdns: &[Vec<Attribute>]) -> String {
    rdns.iter()
        .rev()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let name = SHORT_NAMES
                        .iter()
                        .find(|(oid, _)| *oid == attribute.oid)
                        .map_or(attribute.oid.as_str(), |(_, short)| short);
                    let value = match &attribute.value {
                        AttributeValue::Text(text) => escape(text),
                        AttributeValue::Der(der) => format!("#{}", hex::encode(der)),
                    };
                    format!("{name}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// RFC 4514 §2.4 escaping of a string value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        if c == '\0' {
            out.push_str("\\00");
            continue;
        }
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

    fn cert_with(dn: DistinguishedName) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_common_name_is_the_identity() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "CH");
        dn.push(DnType::OrganizationName, "Bank");
        dn.push(DnType::CommonName, "payments-batch");
        assert_eq!(
            identity_of(&cert_with(dn)).as_deref(),
            Some("payments-batch")
        );
    }

    #[test]
    fn without_a_common_name_the_whole_subject_is_rendered_rfc4514_style() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "CH");
        dn.push(DnType::OrganizationName, "Bank, Zurich");
        dn.push(DnType::OrganizationalUnitName, "#ops ");
        dn.push(
            DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
            DnValue::Utf8String("u1".into()),
        );
        assert_eq!(
            identity_of(&cert_with(dn)).as_deref(),
            Some("UID=u1,OU=\\#ops\\ ,O=Bank\\, Zurich,C=CH")
        );
    }

    #[test]
    fn an_empty_subject_is_no_identity() {
        assert_eq!(identity_of(&cert_with(DistinguishedName::new())), None);
        assert_eq!(identity_of(b"not a certificate"), None);
    }

    #[test]
    fn escaping_follows_rfc4514() {
        assert_eq!(escape("a+b;c<d>e\"f\\g"), "a\\+b\\;c\\<d\\>e\\\"f\\\\g");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("a\0b"), "a\\00b");
    }
}
