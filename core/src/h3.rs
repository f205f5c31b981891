//! H3 cells as used on the wire: the 15-hex-digit lowercase string of the cell index.

use h3o::{CellIndex, LatLng, Resolution};

use crate::Error;

/// Default resolution of `h3_cell` in `bus.positions` (about 9 m edge length).
pub const DEFAULT_RESOLUTION: u8 = 12;

/// Parses a resolution (0..=15).
pub fn resolution(res: u8) -> Result<Resolution, Error> {
    Resolution::try_from(res).map_err(|e| Error::H3(format!("resolution {res}: {e}")))
}

/// The cell containing a point. Coordinates outside WGS84 ranges are refused rather than wrapped
/// around the globe as H3 would (latitude 91 is a bad fix, not a point near the pole).
pub fn cell(lat: f64, lon: f64, res: Resolution) -> Result<CellIndex, Error> {
    if !(lat.abs() <= 90.0 && lon.abs() <= 180.0) {
        return Err(Error::H3(format!("({lat}, {lon}) is not a WGS84 position")));
    }
    LatLng::new(lat, lon)
        .map(|ll| ll.to_cell(res))
        .map_err(|e| Error::H3(format!("({lat}, {lon}): {e}")))
}

/// The cell containing a point, in wire form.
pub fn cell_string(lat: f64, lon: f64, res: Resolution) -> Result<String, Error> {
    cell(lat, lon, res).map(|c| c.to_string())
}

/// Parses a wire-form cell id.
pub fn parse_cell(s: &str) -> Result<CellIndex, Error> {
    s.parse::<CellIndex>().map_err(|e| Error::H3(format!("cell {s:?}: {e}")))
}

/// The ancestor of a wire-form cell at a coarser resolution, in wire form.
pub fn parent_string(cell: &str, res: u8) -> Result<String, Error> {
    let c = parse_cell(cell)?;
    let r = resolution(res)?;
    c.parent(r)
        .map(|p| p.to_string())
        .ok_or_else(|| Error::H3(format!("resolution {res} is finer than cell {cell}")))
}

/// Centre of a wire-form cell as `(lat, lon)`.
pub fn center(cell: &str) -> Result<(f64, f64), Error> {
    let ll = LatLng::from(parse_cell(cell)?);
    Ok((ll.lat(), ll.lng()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_15_lowercase_hex_digits() {
        let c = cell_string(-16.9186, 145.7781, resolution(DEFAULT_RESOLUTION).unwrap()).unwrap();
        assert_eq!(c.len(), 15, "{c}");
        assert!(c.chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase()), "{c}");
        assert_eq!(parse_cell(&c).unwrap().resolution(), Resolution::Twelve);
    }

    #[test]
    fn parent_contains_child_and_center_is_near() {
        let c = cell_string(-16.9186, 145.7781, Resolution::Twelve).unwrap();
        let p = parent_string(&c, 7).unwrap();
        assert_eq!(p, cell_string(-16.9186, 145.7781, Resolution::Seven).unwrap());
        let (lat, lon) = center(&c).unwrap();
        assert!(crate::geometry::haversine_m(lat, lon, -16.9186, 145.7781) < 20.0);
        assert!(parent_string(&p, 12).is_err());
    }

    #[test]
    fn refuses_bad_input() {
        assert!(resolution(16).is_err());
        assert!(cell(f64::NAN, 0.0, Resolution::Five).is_err());
        assert!(cell(91.0, 0.0, Resolution::Five).is_err());
        assert!(cell(0.0, -180.5, Resolution::Five).is_err());
        assert!(cell(-90.0, 180.0, Resolution::Five).is_ok());
        assert!(parse_cell("zz").is_err());
    }
}
