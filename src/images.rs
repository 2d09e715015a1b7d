//! Images people upload (stream thumbnails, channel avatars): checked by their
//! content — magic bytes, then a real decode under size and pixel limits — and
//! re-encoded to a bounded JPEG. The file name and the client's Content-Type
//! are never trusted. Decoding is CPU work: callers run `prepare` in
//! `spawn_blocking`. Nothing here stores anything or knows about HTTP.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbImage};

/// The largest upload accepted, in bytes.
pub const MAX_UPLOAD_BYTES: usize = 5 * 1024 * 1024;
/// The most pixels a decoded upload may have (a small file can claim huge
/// dimensions: a decompression bomb). 40 megapixels covers any camera photo.
pub const MAX_PIXELS: u64 = 40_000_000;
/// Neither side may exceed this, whatever the pixel count.
const MAX_SIDE: u32 = 16_384;
/// What the decoder may allocate in total.
const MAX_ALLOC: u64 = 256 * 1024 * 1024;
/// JPEG quality of re-encoded images.
const QUALITY: u8 = 82;
/// A large image is box-averaged down to this many times its bounds before the
/// filter runs: the filter's working copy is f32 RGBA of the source's width by
/// the new height (80 MB for a 7,000 x 5,600 upload going to 900 x 720, beside
/// the 157 MB decode), the box average writes the smaller image directly.
const PRESCALE: u32 = 2;

/// What an image is for, which decides its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A stream's thumbnail: fits within 1280x720, aspect ratio kept.
    Thumbnail,
    /// A channel's avatar: a 256x256 square, cropped to the centre.
    Avatar,
}

impl Purpose {
    /// The largest width and height the stored image has.
    pub fn bounds(self) -> (u32, u32) {
        match self {
            Purpose::Thumbnail => (1280, 720),
            Purpose::Avatar => (256, 256),
        }
    }
}

/// A re-encoded image, ready to store.
#[derive(Debug)]
pub struct Prepared {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub extension: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Why an upload was refused, in words for the person who chose the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("Choose an image file to upload.")]
    Empty,
    #[error("That file is larger than 5 MiB. Choose a smaller image.")]
    TooLarge,
    #[error(
        "That file is not a PNG, JPEG or WebP image. Choose an image file (renaming a file does not make it one)."
    )]
    NotAnImage,
    #[error("That image is too large ({0}); use one of at most 40 megapixels.")]
    TooManyPixels(String),
    #[error("That image could not be read: the file looks damaged. Try exporting it again.")]
    Damaged,
}

/// The format, read from the first bytes of the file: only the three accepted.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::WebP)
    } else {
        None
    }
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    limits
}

/// Checks `bytes` is an image we accept and re-encodes it for `purpose`.
pub fn prepare(bytes: &[u8], purpose: Purpose) -> Result<Prepared, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    if bytes.len() > MAX_UPLOAD_BYTES {
        return Err(ImageError::TooLarge);
    }
    let format = sniff(bytes).ok_or(ImageError::NotAnImage)?;

    // The header first: refuse a bomb before allocating for it.
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits());
    let (w, h) = reader.into_dimensions().map_err(too_big_or_damaged)?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(ImageError::TooManyPixels(format!("{w}x{h} pixels")));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits());
    let decoded = reader.decode().map_err(too_big_or_damaged)?;

    let (max_w, max_h) = purpose.bounds();
    let decoded = prescale(decoded, (max_w, max_h));
    let resized = match purpose {
        // Only ever scaled down: a small thumbnail stays as sharp as it was.
        Purpose::Thumbnail if decoded.width() > max_w || decoded.height() > max_h => {
            decoded.resize(max_w, max_h, FilterType::Triangle)
        }
        Purpose::Thumbnail => decoded,
        Purpose::Avatar => decoded.resize_to_fill(max_w, max_h, FilterType::Triangle),
    };
    let rgb = flatten(&resized);
    let (width, height) = rgb.dimensions();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode_image(&rgb)
        .map_err(|_| ImageError::Damaged)?;
    Ok(Prepared {
        bytes: out,
        content_type: "image/jpeg",
        extension: "jpg",
        width,
        height,
    })
}

/// `image` box-averaged (each source pixel counted once, no working copy) to
/// `PRESCALE` times the size that covers `bounds`, aspect ratio kept; an image
/// already that small is returned as it is. The decoded original is freed here.
fn prescale(image: DynamicImage, (max_w, max_h): (u32, u32)) -> DynamicImage {
    let (w, h) = (image.width(), image.height());
    let scale = f64::max(
        f64::from(PRESCALE * max_w) / f64::from(w.max(1)),
        f64::from(PRESCALE * max_h) / f64::from(h.max(1)),
    );
    if scale >= 1.0 {
        return image;
    }
    let side = |n: u32| ((f64::from(n) * scale).ceil() as u32).max(1);
    image.thumbnail_exact(side(w), side(h))
}

fn too_big_or_damaged(e: image::ImageError) -> ImageError {
    match e {
        image::ImageError::Limits(_) => ImageError::TooManyPixels("too many pixels".to_owned()),
        _ => ImageError::Damaged,
    }
}

/// JPEG has no transparency: transparent parts become white, not black.
fn flatten(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u16::from(p[3]);
        let mix = |c: u8| ((u16::from(c) * a + 255 * (255 - a)) / 255) as u8;
        image::Rgb([mix(p[0]), mix(p[1]), mix(p[2])])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_pixel(w, h, image::Rgba([200, 10, 10, 255]));
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgba8(img)
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn text_renamed_to_png_is_not_an_image() {
        assert_eq!(
            prepare(b"hello, I am a text file\n", Purpose::Thumbnail).unwrap_err(),
            ImageError::NotAnImage
        );
        // The right magic bytes and nothing behind them: damaged, not accepted.
        assert_eq!(
            prepare(b"\x89PNG\r\n\x1a\nnot really", Purpose::Thumbnail).unwrap_err(),
            ImageError::Damaged
        );
        assert_eq!(
            prepare(b"", Purpose::Avatar).unwrap_err(),
            ImageError::Empty
        );
    }

    #[test]
    fn large_images_are_scaled_into_bounds() {
        let t = prepare(&png(2000, 1000), Purpose::Thumbnail).unwrap();
        assert_eq!((t.width, t.height), (1280, 640));
        assert_eq!(sniff(&t.bytes), Some(ImageFormat::Jpeg));
        let small = prepare(&png(300, 200), Purpose::Thumbnail).unwrap();
        assert_eq!((small.width, small.height), (300, 200));
        let a = prepare(&png(600, 400), Purpose::Avatar).unwrap();
        assert_eq!((a.width, a.height), (256, 256));
    }

    #[test]
    fn big_images_are_box_averaged_to_twice_their_bounds_before_the_filter() {
        let colour = image::Rgb([10, 200, 30]);
        let big = || DynamicImage::ImageRgb8(RgbImage::from_pixel(4000, 3000, colour));
        let t = prescale(big(), Purpose::Thumbnail.bounds());
        assert_eq!((t.width(), t.height()), (2560, 1920));
        let a = prescale(big(), Purpose::Avatar.bounds());
        assert_eq!((a.width(), a.height()), (683, 512));
        // Under twice the bounds one way: left to the filter alone.
        let wide = prescale(
            DynamicImage::ImageRgb8(RgbImage::new(3000, 1000)),
            Purpose::Thumbnail.bounds(),
        );
        assert_eq!((wide.width(), wide.height()), (3000, 1000));

        // The stored image is as large as without the prescale, and the same colour.
        let mut png = Cursor::new(Vec::new());
        big().write_to(&mut png, ImageFormat::Png).unwrap();
        let t = prepare(png.get_ref(), Purpose::Thumbnail).unwrap();
        assert_eq!((t.width, t.height), (960, 720));
        let stored = image::load_from_memory(&t.bytes).unwrap().to_rgb8();
        let centre = stored.get_pixel(480, 360).0;
        for (got, want) in centre.iter().zip(colour.0) {
            assert!(got.abs_diff(want) <= 3, "{centre:?} is not {colour:?}");
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        // A valid PNG header claiming 20000x20000 pixels, no data behind it.
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(20_000u32.to_be_bytes());
        ihdr.extend(20_000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        bytes.extend(13u32.to_be_bytes());
        bytes.extend(&ihdr);
        bytes.extend(crc32(&ihdr).to_be_bytes());
        assert!(matches!(
            prepare(&bytes, Purpose::Thumbnail).unwrap_err(),
            ImageError::TooManyPixels(_)
        ));
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
