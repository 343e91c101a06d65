import Foundation
import PianoDaemon
import PianoTestKit
import XCTest

/// Fuzzed configuration files through the parser and the settings (the daemon's start and
/// reload path: `DaemonSettings().applying(file:)`): thousands of seeded mutations of the
/// presets and of lines built from the known keys. None may crash; every refusal is a
/// `ConfigError` whose text is one line naming the file.
final class ConfigFuzzTests: XCTestCase {
    /// SplitMix64 (PianoTestKit): the same cases on every run.
    typealias Generator = SplitMix64

    static let keys = DaemonSettings.keys.sorted() + ["gain", "Piano", "weights.x", "\"weights\"", "", "a b", "[x]"]
    static let values = ["\"linear\"", "'soft'", "\"hard\"", "0.2", "5", "5.01", "0.19", "-60", "24", "24.0001", "1e308", "1e309",
                         "-1e400", "nan", "inf", "-inf", "+3", "0x10", "1_000", "_1", "1__0", "9223372036854775807",
                         "9223372036854775808", "-9223372036854775809", "true", "false", "True", "\"all\"", "[1, 2]", "[]",
                         "[0, 17]", "[1,,2]", "[[1]]", "[1, \"a\"]", "[-1, 0, 1]", "[", "]", "\"", "'", "\"\\u00e9\"",
                         "\"a\\nb\"", "\"\\x\"", "\"(\"", "\"[a-\"", "\"system\"", "\"none\"", "\".*\"", "\"a\\\\\"",
                         "'c:\\path'", "\"\"", "''", "\"unterminated", "{}", "{ a = 1 }", "2024-01-01", "\"jack\"",
                         "\"null\"", "\"pulse\"", "0", "-1", "384000", "384001", "48000 # c", "\"#\" # c", "1 2", "\"a\" \"b\""]
    static let junk: [String] = ["\0", "\u{FEFF}", "\r", "\t", "=", "==", "#", "[", "]", "[[", "\"", "'", "\\", ",", ".", " ",
                                 "\u{1F3B9}", "é", "\u{202E}", "\u{00A0}", String(repeating: "x", count: 5000),
                                 String(repeating: "[", count: 200), String(repeating: "\"", count: 101)]

    /// Writes without Foundation's fsync (thousands of files).
    static func write(_ bytes: [UInt8], to path: String) {
        guard let f = fopen(path, "wb") else { return }
        _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, bytes.count, f) }
        fclose(f)
    }

    static func seeds() -> [String] {
        let presets = TestKit.packageRoot.appendingPathComponent("presets")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: presets.path)) ?? []
        return files.filter { $0.hasSuffix(".toml") }.sorted().compactMap {
            try? String(contentsOf: presets.appendingPathComponent($0), encoding: .utf8)
        }
    }

    static func randomLine(_ g: inout Generator) -> String {
        switch g.below(6) {
        case 0: return "[\(g.pick(["daemon", "", "a.b", "x y", "[t]", "audio"]))]"
        case 1: return g.pick(junk)
        case 2: return "# " + g.pick(junk)
        default: return "\(g.pick(keys)) \(g.pick(["=", " = ", "=", ":", "=="])) \(g.pick(values))"
        }
    }

    /// One mutated config text, or raw bytes (not always UTF-8).
    static func mutate(_ seeds: [String], _ g: inout Generator) -> [UInt8] {
        var lines: [String]
        if seeds.isEmpty || g.chancePerMillion(0.3) {
            lines = (0..<g.below(12)).map { _ in randomLine(&g) }
        } else {
            lines = g.pick(seeds).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        }
        for _ in 0..<(1 + g.below(4)) {
            switch g.below(7) {
            case 0: lines.insert(randomLine(&g), at: g.below(lines.count + 1))
            case 1: if !lines.isEmpty { lines.remove(at: g.below(lines.count)) }
            case 2: if !lines.isEmpty { let i = g.below(lines.count); lines.insert(lines[i], at: i) }   // set twice
            case 3:   // replace the value of a line
                if !lines.isEmpty { let i = g.below(lines.count)
                    if let eq = lines[i].firstIndex(of: "=") { lines[i] = String(lines[i][...eq]) + " " + g.pick(values) } }
            case 4:   // insert a junk fragment inside a line
                if !lines.isEmpty { let i = g.below(lines.count); var s = Array(lines[i]); s.insert(contentsOf: g.pick(junk), at: g.below(s.count + 1)); lines[i] = String(s) }
            case 5:   // truncate a line
                if !lines.isEmpty { let i = g.below(lines.count); lines[i] = String(lines[i].prefix(g.below(lines[i].count + 1))) }
            default: lines.append(randomLine(&g))
            }
        }
        var bytes = Array(lines.joined(separator: g.chancePerMillion(0.1) ? "\r\n" : "\n").utf8)
        if g.chancePerMillion(0.15) && !bytes.isEmpty {   // flip some bytes: invalid UTF-8, NULs, control characters
            for _ in 0..<(1 + g.below(4)) { bytes[g.below(bytes.count)] = UInt8(truncatingIfNeeded: g.next()) }
        }
        if g.chancePerMillion(0.05) { bytes = (0..<g.below(300)).map { _ in UInt8(truncatingIfNeeded: g.next()) } }
        return bytes
    }

    func testFuzzedConfigsNeverCrashAndErrorsAreOneLineNamingTheFile() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("fuzz-config.toml").path
        let seeds = Self.seeds()
        XCTAssertFalse(seeds.isEmpty, "presets/*.toml not found")
        var g = Generator(seed: 0xDD5B_0F1A)
        let cases = 3000
        var accepted = 0, refused = 0, notConfigError = 0
        var multiLine: [String] = [], unnamed: [String] = []
        var problems: [String: Int] = [:]
        let started = Date()
        for _ in 0..<cases {
            let bytes = Self.mutate(seeds, &g)
            Self.write(bytes, to: file)
            do {
                _ = try DaemonSettings().applying(file: file)
                accepted += 1
            } catch let e as ConfigError {
                refused += 1
                let text = e.description
                if text.unicodeScalars.contains(where: { $0 == "\n" || $0 == "\r" }) { multiLine.append(text.debugDescription) }
                if !text.hasPrefix(file) { unnamed.append(text.debugDescription) }
                let kind = e.problem.prefix { $0 != "'" && $0 != "(" }.trimmingCharacters(in: .whitespaces)
                problems[String(kind.prefix(40)), default: 0] += 1
            } catch {
                notConfigError += 1
                unnamed.append("\(error)")
            }
        }
        let seconds = Date().timeIntervalSince(started)
        print(String(format: "config fuzz: %d cases in %.2f s: %d accepted, %d refused, %d not ConfigError, %d multi-line, %d without the file name",
                     cases, seconds, accepted, refused, notConfigError, multiLine.count, unnamed.count))
        for (k, n) in problems.sorted(by: { $0.value > $1.value }).prefix(12) { print("  \(n) × \(k)") }
        for m in multiLine.prefix(5) { print("  multi-line: \(m)") }
        XCTAssertEqual(accepted + refused + notConfigError, cases)
        XCTAssertGreaterThan(accepted, 0, "some mutations stay valid")
        XCTAssertGreaterThan(refused, cases / 4, "most mutations are refused")
        XCTAssertEqual(notConfigError, 0)
        XCTAssertEqual(unnamed, [], "every error names the file")
        XCTAssertEqual(multiLine, [], "every error is one line")
    }

    /// Values that reach an error message verbatim: an escaped newline in a string must not
    /// make the daemon's one-line error two lines.
    func testErrorsQuotingValuesStayOneLine() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("quoted.toml").path
        var multiLine: [String] = []
        for text in ["velocity_curve = \"a\\nb\"", "connect_audio = \"(\\nsecond line\"", "connect_midi = \"[\\r\\n\"",
                     "piano = \"x\"\nvelocity_curve = \"bad\\tvalue\"", "audio = \"x\\ny\""] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: file))
            do { _ = try DaemonSettings().applying(file: file) } catch {
                let s = "\(error)"
                XCTAssertTrue(s.hasPrefix(file), s)
                if s.unicodeScalars.contains(where: { $0 == "\n" || $0 == "\r" }) { multiLine.append(s.debugDescription) }
            }
        }
        for m in multiLine { print("multi-line config error: \(m)") }
        XCTAssertEqual(multiLine, [], "every error is one line")
    }

    /// TOML allows CRLF line endings (a file saved on Windows): every preset must read the
    /// same with them (not be refused, and not be read as one long comment line).
    func testPresetsWithCRLFLineEndings() throws {
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let presets = TestKit.packageRoot.appendingPathComponent("presets")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: presets.path)) ?? []).filter { $0.hasSuffix(".toml") }.sorted()
        XCTAssertFalse(names.isEmpty)
        let lf = dir.appendingPathComponent("lf.toml"), crlf = dir.appendingPathComponent("crlf.toml")
        var failures: [String] = []
        for name in names {
            let text = try String(contentsOf: presets.appendingPathComponent(name), encoding: .utf8)
            Self.write(Array(text.utf8), to: lf.path)
            Self.write(Array(text.replacingOccurrences(of: "\n", with: "\r\n").utf8), to: crlf.path)
            let expected = try DaemonSettings().applying(file: lf.path)
            do {
                let got = try DaemonSettings().applying(file: crlf.path)
                if got != expected {
                    failures.append("\(name) with CRLF: piano \(got.piano ?? "default"), gain \(got.gainDB) dB, curve \(got.velocityCurve) "
                                    + "(with LF: piano \(expected.piano ?? "default"), gain \(expected.gainDB) dB, curve \(expected.velocityCurve))")
                }
            } catch {
                failures.append("\(name) with CRLF refused: " + "\(error)".debugDescription.prefix(120))
            }
        }
        for f in failures { print("CRLF: \(f)") }
        XCTAssertEqual(failures.count, 0, "\(failures.count) of \(names.count) presets read differently with CRLF line endings")
    }
}
