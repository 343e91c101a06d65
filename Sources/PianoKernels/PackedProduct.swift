import PianoKernelTypes

// Small fixed-shape matrix products for the networks' steps (issue 15): at most 16 rows (one per
// voice) times a weight matrix packed once when the model is built (`PackedMatrix`, panels of 16
// columns, [inputs][16] each, zero-padded). Compiled per instruction set like Kernels.swift.
//
// Every output element is summed the same way in every tiling and every FMA variant: an
// accumulator starting at 0, one fused multiply-add per input in input order, then added to y
// (what OpenBLAS's sgemm does with beta = 1). So the avx2 and avx512 variants agree to the bit,
// a row's result does not depend on the other rows (voices can be skipped or split across
// threads), and the engine's speed and results no longer depend on which kernel OpenBLAS picks.

typealias Panel = SIMD16<Float>

@inline(__always)
func fmaPanel(_ a: Panel, _ b: Panel, _ c: Panel) -> Panel {
    #if DDSP_FMA
    return c.addingProduct(a, b)
    #else
    return a * b + c
    #endif
}

/// y[r·ldy + n] += Σ_i x[r·lda + i] · B[i, n] for r < rows, n < columns, B packed by
/// `PackedMatrix` with `inputs` rows.
func packedProduct(_ rows: Int, _ x: UnsafePointer<Float>, _ lda: Int, _ packed: UnsafePointer<Float>,
                   _ inputs: Int, _ columns: Int, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
    let panels = (columns + 15) / 16
    let panelStride = inputs * 16
    var r = 0
    while r + 4 <= rows {
        let xr = x + r * lda, yr = y + r * ldy
        var p = 0
        #if DDSP_KERNELS_AVX512
        // Eight zmm accumulators: enough independent FMAs in flight on one or two FMA units.
        while p + 2 <= panels {
            tile4x32(xr, lda, packed + p * panelStride, panelStride, inputs, yr + 16 * p, ldy,
                     min(32, columns - 16 * p))
            p += 2
        }
        #endif
        while p < panels {
            tile4x16(xr, lda, packed + p * panelStride, inputs, yr + 16 * p, ldy, min(16, columns - 16 * p))
            p += 1
        }
        r += 4
    }
    while r < rows {
        // One row: four panels at a time, so that four independent FMA chains hide the latency
        // a single chain would wait on (each element's own order is unchanged).
        let xr = x + r * lda, yr = y + r * ldy
        var p = 0
        while p + 4 <= panels {
            tile1x64(xr, packed + p * panelStride, panelStride, inputs, yr + 16 * p, min(64, columns - 16 * p))
            p += 4
        }
        while p < panels {
            tile1x16(xr, packed + p * panelStride, inputs, yr + 16 * p, min(16, columns - 16 * p))
            p += 1
        }
        r += 1
    }
}

/// y[0..<width] += acc (width ≤ 16; a full panel in one vector add).
@inline(__always)
func addPanel(_ acc: Panel, _ y: UnsafeMutablePointer<Float>, _ width: Int) {
    if width == 16 {
        let yr = UnsafeMutableRawPointer(y)
        yr.storeBytes(of: yr.loadUnaligned(as: Panel.self) + acc, as: Panel.self)
    } else {
        for j in 0..<width { y[j] += acc[j] }
    }
}

@inline(__always)
func loadPanel(_ b: UnsafePointer<Float>, _ i: Int) -> Panel {
    UnsafeRawPointer(b + 16 * i).loadUnaligned(as: Panel.self)
}

@inline(__always)
func tile1x16(_ x: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ k: Int,
              _ y: UnsafeMutablePointer<Float>, _ width: Int) {
    var a0 = Panel()
    for i in 0..<k { a0 = fmaPanel(Panel(repeating: x[i]), loadPanel(b, i), a0) }
    addPanel(a0, y, width)
}

/// Four panels (`panelStride` apart) of one row; `width` (49…64) columns.
@inline(__always)
func tile1x64(_ x: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ panelStride: Int, _ k: Int,
              _ y: UnsafeMutablePointer<Float>, _ width: Int) {
    var a0 = Panel(), a1 = Panel(), a2 = Panel(), a3 = Panel()
    let b1 = b + panelStride, b2 = b + 2 * panelStride, b3 = b + 3 * panelStride
    for i in 0..<k {
        let s = Panel(repeating: x[i])
        a0 = fmaPanel(s, loadPanel(b, i), a0)
        a1 = fmaPanel(s, loadPanel(b1, i), a1)
        a2 = fmaPanel(s, loadPanel(b2, i), a2)
        a3 = fmaPanel(s, loadPanel(b3, i), a3)
    }
    addPanel(a0, y, 16); addPanel(a1, y + 16, 16); addPanel(a2, y + 32, 16); addPanel(a3, y + 48, width - 48)
}

@inline(__always)
func tile4x16(_ x: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ k: Int,
              _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ width: Int) {
    var a0 = Panel(), a1 = Panel(), a2 = Panel(), a3 = Panel()
    let x1 = x + lda, x2 = x + 2 * lda, x3 = x + 3 * lda
    for i in 0..<k {
        let bv = loadPanel(b, i)
        a0 = fmaPanel(Panel(repeating: x[i]), bv, a0)
        a1 = fmaPanel(Panel(repeating: x1[i]), bv, a1)
        a2 = fmaPanel(Panel(repeating: x2[i]), bv, a2)
        a3 = fmaPanel(Panel(repeating: x3[i]), bv, a3)
    }
    addPanel(a0, y, width)
    addPanel(a1, y + ldy, width)
    addPanel(a2, y + 2 * ldy, width)
    addPanel(a3, y + 3 * ldy, width)
}

#if DDSP_KERNELS_AVX512
/// Two panels (`panelStride` apart) of four rows; `width` ≤ 32 columns.
@inline(__always)
func tile4x32(_ x: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ panelStride: Int, _ k: Int,
              _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ width: Int) {
    var a0 = Panel(), a1 = Panel(), a2 = Panel(), a3 = Panel()
    var c0 = Panel(), c1 = Panel(), c2 = Panel(), c3 = Panel()
    let x1 = x + lda, x2 = x + 2 * lda, x3 = x + 3 * lda
    let b2 = b + panelStride
    for i in 0..<k {
        let bv = loadPanel(b, i), cv = loadPanel(b2, i)
        let s0 = Panel(repeating: x[i]), s1 = Panel(repeating: x1[i])
        let s2 = Panel(repeating: x2[i]), s3 = Panel(repeating: x3[i])
        a0 = fmaPanel(s0, bv, a0); c0 = fmaPanel(s0, cv, c0)
        a1 = fmaPanel(s1, bv, a1); c1 = fmaPanel(s1, cv, c1)
        a2 = fmaPanel(s2, bv, a2); c2 = fmaPanel(s2, cv, c2)
        a3 = fmaPanel(s3, bv, a3); c3 = fmaPanel(s3, cv, c3)
    }
    let w2 = width - 16
    addPanel(a0, y, 16); addPanel(c0, y + 16, w2)
    addPanel(a1, y + ldy, 16); addPanel(c1, y + ldy + 16, w2)
    addPanel(a2, y + 2 * ldy, 16); addPanel(c2, y + 2 * ldy + 16, w2)
    addPanel(a3, y + 3 * ldy, 16); addPanel(c3, y + 3 * ldy + 16, w2)
}
#endif

// MARK: Reverb

@inline(__always)
func fmaScalar(_ a: Float, _ b: Float, _ c: Float) -> Float {
    #if DDSP_FMA
    return c.addingProduct(a, b)
    #else
    return a * b + c
    #endif
}

/// The partitioned convolution's accumulation (Reverb): out[k] = Σ_p X_{(head + p) mod P}[k] · H_p[k]
/// over P partitions of K bins, complex in split form, summed over p in order. Thirty-two bins
/// at a time in registers (four accumulators in flight), so the sums never go through memory.
func spectralAccumulate(_ partitions: Int, _ bins: Int, _ head: Int,
                        _ xRe: UnsafePointer<Float>, _ xIm: UnsafePointer<Float>,
                        _ hRe: UnsafePointer<Float>, _ hIm: UnsafePointer<Float>,
                        _ outRe: UnsafeMutablePointer<Float>, _ outIm: UnsafeMutablePointer<Float>) {
    let P = partitions, K = bins
    func load(_ p: UnsafePointer<Float>) -> Panel { UnsafeRawPointer(p).loadUnaligned(as: Panel.self) }
    func store(_ v: Panel, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Panel.self) }
    var k = 0
    while k + 32 <= K {
        var r0 = Panel(), i0 = Panel(), r1 = Panel(), i1 = Panel()
        var slot = head
        for p in 0..<P {
            let xo = slot * K + k, ho = p * K + k
            let a0 = load(xRe + xo), b0 = load(xIm + xo), c0 = load(hRe + ho), d0 = load(hIm + ho)
            let a1 = load(xRe + xo + 16), b1 = load(xIm + xo + 16), c1 = load(hRe + ho + 16), d1 = load(hIm + ho + 16)
            r0 = fmaPanel(-b0, d0, fmaPanel(a0, c0, r0)); i0 = fmaPanel(b0, c0, fmaPanel(a0, d0, i0))
            r1 = fmaPanel(-b1, d1, fmaPanel(a1, c1, r1)); i1 = fmaPanel(b1, c1, fmaPanel(a1, d1, i1))
            slot += 1
            if slot == P { slot = 0 }
        }
        store(r0, outRe + k); store(i0, outIm + k); store(r1, outRe + k + 16); store(i1, outIm + k + 16)
        k += 32
    }
    while k + 16 <= K {
        var r0 = Panel(), i0 = Panel()
        var slot = head
        for p in 0..<P {
            let xo = slot * K + k, ho = p * K + k
            let a0 = load(xRe + xo), b0 = load(xIm + xo), c0 = load(hRe + ho), d0 = load(hIm + ho)
            r0 = fmaPanel(-b0, d0, fmaPanel(a0, c0, r0)); i0 = fmaPanel(b0, c0, fmaPanel(a0, d0, i0))
            slot += 1
            if slot == P { slot = 0 }
        }
        store(r0, outRe + k); store(i0, outIm + k)
        k += 16
    }
    while k < K {
        var r: Float = 0, i: Float = 0
        var slot = head
        for p in 0..<P {
            let xo = slot * K + k, ho = p * K + k
            r = fmaScalar(-xIm[xo], hIm[ho], fmaScalar(xRe[xo], hRe[ho], r))
            i = fmaScalar(xIm[xo], hRe[ho], fmaScalar(xRe[xo], hIm[ho], i))
            slot += 1
            if slot == P { slot = 0 }
        }
        outRe[k] = r; outIm[k] = i
        k += 1
    }
}
