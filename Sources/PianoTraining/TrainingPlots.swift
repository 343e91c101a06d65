import CZlib
import DDSPPiano
import Foundation
import PianoStudy

/// An RGB picture written as PNG (zlib deflate).
public struct RGBImage: Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]   // [height, width, 3]

    public init(width: Int, height: Int, background: (UInt8, UInt8, UInt8) = (255, 255, 255)) {
        self.width = width; self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) { pixels[3 * i] = background.0; pixels[3 * i + 1] = background.1; pixels[3 * i + 2] = background.2 }
    }

    public mutating func set(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = 3 * (y * width + x)
        pixels[i] = c.0; pixels[i + 1] = c.1; pixels[i + 2] = c.2
    }

    public mutating func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: (UInt8, UInt8, UInt8), thick: Bool = false) {
        var x = x0, y = y0
        let dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1
        var err = dx + dy
        while true {
            set(x, y, c)
            if thick { set(x, y + 1, c); set(x + 1, y, c) }
            if x == x1 && y == y1 { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
        }
    }

    // A 3×5 font for numbers and a few letters (axis labels), drawn at `scale`.
    static let glyphs: [Character: [UInt8]] = [
        "0": [7, 5, 5, 5, 7], "1": [2, 6, 2, 2, 7], "2": [7, 1, 7, 4, 7], "3": [7, 1, 7, 1, 7], "4": [5, 5, 7, 1, 1],
        "5": [7, 4, 7, 1, 7], "6": [7, 4, 7, 5, 7], "7": [7, 1, 1, 1, 1], "8": [7, 5, 7, 5, 7], "9": [7, 5, 7, 1, 7],
        ".": [0, 0, 0, 0, 2], "-": [0, 0, 7, 0, 0], "e": [0, 7, 7, 4, 7], "k": [4, 5, 6, 5, 5], "s": [0, 7, 4, 1, 7],
        "t": [2, 7, 2, 2, 3], "r": [0, 6, 5, 4, 4], "a": [0, 7, 1, 7, 7], "i": [2, 0, 2, 2, 2], "n": [0, 6, 5, 5, 5],
        "v": [0, 5, 5, 5, 2], "l": [6, 2, 2, 2, 7], "o": [0, 7, 5, 5, 7], "m": [0, 7, 7, 5, 5], "d": [1, 7, 5, 5, 7],
        "g": [7, 5, 7, 1, 6], "p": [0, 7, 5, 7, 4], "h": [4, 4, 7, 5, 5], "z": [0, 7, 2, 4, 7], "f": [3, 2, 7, 2, 2],
        "u": [0, 5, 5, 5, 7], "c": [0, 7, 4, 4, 7], " ": [0, 0, 0, 0, 0], ":": [0, 2, 0, 2, 0], "/": [1, 1, 2, 4, 4],
        "b": [4, 4, 7, 5, 7], "(": [1, 2, 2, 2, 1], ")": [4, 2, 2, 2, 4], ",": [0, 0, 0, 2, 4], "w": [0, 5, 5, 7, 7],
        "x": [0, 5, 2, 2, 5], "y": [5, 5, 7, 1, 7], "q": [7, 5, 7, 1, 1], "j": [1, 0, 1, 1, 6],
    ]

    public mutating func text(_ s: String, x: Int, y: Int, _ c: (UInt8, UInt8, UInt8) = (0, 0, 0), scale: Int = 2) {
        var cx = x
        for ch in s.lowercased() {
            if let g = Self.glyphs[ch] {
                for (row, bits) in g.enumerated() {
                    for col in 0..<3 where bits & (4 >> col) != 0 {
                        for a in 0..<scale { for b in 0..<scale { set(cx + col * scale + a, y + row * scale + b, c) } }
                    }
                }
            }
            cx += 4 * scale
        }
    }

    /// The PNG file.
    public func png() -> [UInt8] {
        var raw = [UInt8](); raw.reserveCapacity(height * (width * 3 + 1))
        for y in 0..<height { raw.append(0); raw += pixels[(y * width * 3)..<((y + 1) * width * 3)] }
        var size = compressBound(uLong(raw.count))
        var zlib = [UInt8](repeating: 0, count: Int(size))
        let status = zlib.withUnsafeMutableBufferPointer { z in raw.withUnsafeBufferPointer { r in compress2(z.baseAddress, &size, r.baseAddress, uLong(r.count), 9) } }
        precondition(status == Z_OK, "zlib compress2 failed (\(status))")
        zlib.removeLast(zlib.count - Int(size))
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        out += chunk("IHDR", be32(UInt32(width)) + be32(UInt32(height)) + [8, 2, 0, 0, 0])
        out += chunk("IDAT", zlib)
        out += chunk("IEND", [])
        return out
    }

    private func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    private func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
        }
        return be32(UInt32(data.count)) + body + be32(~crc)
    }
}

public enum TrainingPlots {
    static func tick(_ v: Double) -> String {
        let a = abs(v)
        if a >= 1000 || (a < 0.01 && a > 0) { return String(format: "%.1e", v).replacingOccurrences(of: "e+0", with: "e").replacingOccurrences(of: "e-0", with: "e-") }
        return a >= 10 ? String(format: "%.0f", v) : String(format: "%.2f", v)
    }

    /// Training loss per step (grey), its running mean over 20 steps (blue) and validation loss
    /// (orange dots joined), against the step.
    public static func lossCurve(train: [(step: Int, loss: Double)], validation: [(step: Int, loss: Double)],
                                 width: Int = 900, height: Int = 420) -> RGBImage {
        var img = RGBImage(width: width, height: height)
        let left = 70, right = width - 20, top = 30, bottom = height - 40
        let all = (train.map(\.loss) + validation.map(\.loss)).filter(\.isFinite)
        let steps = train.map(\.step) + validation.map(\.step)
        guard let lo0 = all.min(), let hi0 = all.max(), let maxStep = steps.max() else { return img }
        let pad = max(1e-9, (hi0 - lo0) * 0.05)
        let lo = lo0 - pad, hi = hi0 + pad
        let s0 = Double(steps.min() ?? 0), s1 = Double(max(maxStep, (steps.min() ?? 0) + 1))
        func px(_ s: Int) -> Int { left + Int(Double(right - left) * (Double(s) - s0) / (s1 - s0)) }
        func py(_ v: Double) -> Int { bottom - Int(Double(bottom - top) * (v - lo) / (hi - lo)) }
        for k in 0...4 {
            let v = lo + (hi - lo) * Double(k) / 4, y = py(v)
            img.line(left, y, right, y, (225, 225, 225))
            img.text(tick(v), x: 4, y: y - 5)
            let s = Int(s0 + (s1 - s0) * Double(k) / 4)
            img.text(String(s), x: px(s) - 8, y: bottom + 8)
        }
        img.line(left, top, left, bottom, (0, 0, 0)); img.line(left, bottom, right, bottom, (0, 0, 0))
        img.text("loss: train (blue, mean of 20 steps), validation (orange); x: step", x: left, y: 8)
        var prev: (Int, Int)? = nil
        for p in train where p.loss.isFinite {
            let q = (px(p.step), py(p.loss))
            if let a = prev { img.line(a.0, a.1, q.0, q.1, (200, 200, 200)) }
            prev = q
        }
        prev = nil
        for (i, p) in train.enumerated() {
            let window = train[max(0, i - 19)...i].map(\.loss).filter(\.isFinite)
            guard !window.isEmpty else { continue }
            let q = (px(p.step), py(window.reduce(0, +) / Double(window.count)))
            if let a = prev { img.line(a.0, a.1, q.0, q.1, (31, 119, 180), thick: true) }
            prev = q
        }
        prev = nil
        for p in validation where p.loss.isFinite {
            let q = (px(p.step), py(p.loss))
            if let a = prev { img.line(a.0, a.1, q.0, q.1, (255, 127, 14), thick: true) }
            for dx in -2...2 { for dy in -2...2 { img.set(q.0 + dx, q.1 + dy, (255, 127, 14)) } }
            prev = q
        }
        return img
    }

    /// The colour of a level `v` dB on a scale whose top is `peak` (80 dB range):
    /// black → purple → orange → yellow-white.
    static func heat(_ v: Float, peak: Float) -> (UInt8, UInt8, UInt8) {
        let t = Double(min(max((v - (peak - 80)) / 80, 0), 1))
        let stops: [(Double, Double, Double)] = [(0, 0, 0.02), (0.35, 0.05, 0.45), (0.85, 0.35, 0.2), (1, 0.95, 0.6)]
        let x = t * Double(stops.count - 1), i = min(Int(x), stops.count - 2), f = x - Double(i)
        let c = (stops[i].0 + f * (stops[i + 1].0 - stops[i].0), stops[i].1 + f * (stops[i + 1].1 - stops[i].1), stops[i].2 + f * (stops[i + 1].2 - stops[i].2))
        return (UInt8(c.0 * 255), UInt8(c.1 * 255), UInt8(c.2 * 255))
    }

    /// Height of one panel of `comparison`: 513 bins of a 1024-point frame on 256 rows.
    public static let panelRows = 256
    static let labelRows = 22

    /// Spectrograms of several signals of one sample rate, stacked top to bottom with their
    /// labels, for comparing by eye (the same piece recorded and rendered by several models):
    /// 1024-point frames, hop 128 (one column each), 0 Hz to Nyquist upwards, pairs of bins
    /// drawn as one row (their maximum), one dB scale for all (80 dB below the loudest), so a
    /// quieter panel looks quieter. Signals of different lengths are drawn from their starts.
    public static func comparison(_ panels: [(label: String, samples: [Float])], title: String = "") -> RGBImage {
        let stft = STFT(size: 1024, hop: 128)
        let bins = stft.bins, rows = panelRows
        let levels = panels.map { p -> (frames: Int, db: [Float]) in
            let m = p.samples.count >= 1024 ? stft.magnitudes(p.samples) : []
            return (m.count / bins, m.map { 20 * log10(max($0, 1e-7)) })
        }
        let peak = levels.map { $0.db.max() ?? -140 }.max() ?? 0
        let width = max(320, levels.map(\.frames).max() ?? 0)
        let top = title.isEmpty ? 0 : labelRows
        var img = RGBImage(width: width, height: top + panels.count * (labelRows + rows))
        if !title.isEmpty { img.text(title, x: 4, y: 4) }
        for (p, l) in levels.enumerated() {
            let y0 = top + p * (labelRows + rows)
            img.text(panels[p].label, x: 4, y: y0 + 4)
            for f in 0..<l.frames {
                for r in 0..<rows {
                    let v = max(l.db[f * bins + 2 * r], l.db[f * bins + 2 * r + 1])
                    img.set(f, y0 + labelRows + rows - 1 - r, heat(v, peak: peak))
                }
            }
        }
        return img
    }

    /// The run folder's picture: the target above the model on one dB scale (`comparison`).
    public static func spectrograms(target: [Float], model: [Float], label: String = "") -> RGBImage {
        comparison([("target", target), ("model", model)], title: label)
    }
}
