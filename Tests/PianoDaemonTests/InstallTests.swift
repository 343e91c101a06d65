import Foundation
import PianoTestKit
import PianoIO
import XCTest

/// `make install` (issue 12): the three programs with the Swift runtime linked in, weights,
/// presets, unit, man pages and completions in their FHS places; the installed programs run with
/// no toolchain on PATH and find their weights beside their bin/ folder.
final class InstallTests: XCTestCase {
    private func run(_ tool: String, _ args: [String], environment: [String: String]? = nil,
                     directory: URL? = nil, timeout: TimeInterval = 1200) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        if let environment { p.environment = environment }
        if let directory { p.currentDirectoryURL = directory }
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("install-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        defer { try? FileManager.default.removeItem(at: log) }
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning { p.interrupt(); usleep(500_000); if p.isRunning { p.terminate() } }
        p.waitUntilExit()
        try handle.close()
        return (p.terminationStatus, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    func testMakeInstallGivesSelfContainedPrograms() throws {
        guard let make = DaemonSupport.tool("make") else {
            print("skipped: make is not installed")
            throw XCTSkip("no make")
        }
        let stage = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: stage) }
        let started = Date()
        let m = try run(make.path, ["install", "DESTDIR=\(stage.path)", "PREFIX=/usr"], directory: TestKit.packageRoot)
        print(String(format: "make install: exit %d in %.0f s", m.status, Date().timeIntervalSince(started)))
        XCTAssertEqual(m.status, 0, String(m.output.suffix(3000)))
        guard m.status == 0 else { return }
        let root = stage.appendingPathComponent("usr")
        let fm = FileManager.default
        let programs = ["ddsp-piano", "ddsp-pianod", "ddsp-piano-train"]
        for p in programs {
            for path in ["bin/\(p)", "share/man/man1/\(p).1", "share/bash-completion/completions/\(p)",
                         "share/zsh/vendor-completions/_\(p)", "share/fish/vendor_completions.d/\(p).fish"] {
                XCTAssertTrue(fm.fileExists(atPath: root.appendingPathComponent(path).path), "missing \(path)")
            }
            // No Swift library left to find at run time.
            let ldd = try run("/usr/bin/ldd", [root.appendingPathComponent("bin/\(p)").path])
            let swiftLibraries = ldd.output.split(separator: "\n").filter { $0.lowercased().contains("swift") || $0.contains("Foundation") }
            print("\(p): \(ldd.output.split(separator: "\n").count) shared libraries, Swift ones: \(swiftLibraries)")
            XCTAssertEqual(swiftLibraries, [], p)
        }
        for path in ["share/ddsp-piano/weights/dafx22.safetensors", "share/ddsp-piano/presets/2018.toml",
                     "share/doc/ddsp-piano/NOTICE", "share/doc/ddsp-piano/examples/arpeggios.mid",
                     "lib/lv2/ddsp-piano.lv2/manifest.ttl", "lib/lv2/ddsp-piano.lv2/ddsp-piano.ttl", "lib/lv2/ddsp-piano.lv2/ddsp-piano.so"] {
            XCTAssertTrue(fm.fileExists(atPath: root.appendingPathComponent(path).path), "missing \(path)")
        }
        // The installed plugin: no Swift library; it finds the installation's weights
        // (PREFIX/share beside PREFIX/lib/lv2) with nothing set, and plays.
        let plugin = root.appendingPathComponent("lib/lv2/ddsp-piano.lv2")
        let pluginLibs = try run("/usr/bin/ldd", [plugin.appendingPathComponent("ddsp-piano.so").path]).output
        XCTAssertFalse(pluginLibs.contains("libswift") || pluginLibs.contains("Foundation"), pluginLibs)
        let events = stage.appendingPathComponent("events.txt")
        try "4800 144 60 100\n30000 128 60 0\n".write(to: events, atomically: true, encoding: .utf8)
        let played = try run(TestKit.executable("lv2-test-host").path,
                             [plugin.path, "48000", "512", "48000", events.path, stage.appendingPathComponent("lv2.f32").path, "9"],
                             environment: ["PATH": "/usr/bin:/bin", "HOME": stage.appendingPathComponent("home").path])
        let lv2Take = (try? Data(contentsOf: stage.appendingPathComponent("lv2.f32"))) ?? Data()
        let lv2Peak = lv2Take.withUnsafeBytes { $0.bindMemory(to: Float.self).map(abs).max() ?? 0 }
        print("installed plugin: \(played.output.trimmingCharacters(in: .newlines)); peak \(lv2Peak)")
        XCTAssertEqual(played.status, 0, played.output)
        XCTAssertGreaterThan(lv2Peak, 0.01, "the installed plugin plays a note with the installed weights")
        // For one user: ~/.lv2 (here a folder of the stage), the weights inside the bundle.
        let userDir = stage.appendingPathComponent("user-lv2")
        let u = try run(make.path, ["install-lv2-user", "LV2_USER_DIR=\(userDir.path)"], directory: TestKit.packageRoot)
        XCTAssertEqual(u.status, 0, String(u.output.suffix(2000)))
        let userBundle = userDir.appendingPathComponent("ddsp-piano.lv2")
        XCTAssertEqual(u.output.split(separator: "\n").last.map(String.init), userBundle.path, "its last line is the bundle")
        for name in ["manifest.ttl", "ddsp-piano.ttl", "ddsp-piano.so", "weights/dafx22.safetensors"] {
            XCTAssertTrue(fm.fileExists(atPath: userBundle.appendingPathComponent(name).path), "install-lv2-user: missing \(name)")
        }
        let userPlayed = try run(TestKit.executable("lv2-test-host").path,
                                 [userBundle.path, "48000", "512", "48000", events.path, stage.appendingPathComponent("user.f32").path, "9"],
                                 environment: ["PATH": "/usr/bin:/bin", "HOME": stage.appendingPathComponent("home").path])
        let userTake = (try? Data(contentsOf: stage.appendingPathComponent("user.f32"))) ?? Data()
        print("user plugin: \(userPlayed.output.trimmingCharacters(in: .newlines)); identical to the system one: \(userTake == lv2Take)")
        XCTAssertEqual(userPlayed.status, 0, userPlayed.output)
        XCTAssertEqual(userTake, lv2Take, "the user's bundle plays its own weights (the same dafx22 file) as the installed one")
        let unit = try String(contentsOf: root.appendingPathComponent("lib/systemd/user/ddsp-pianod.service"), encoding: .utf8)
        XCTAssertTrue(unit.contains("\nExecStart=/usr/bin/ddsp-pianod\n"), "the unit starts the installed daemon")

        // The toolchain out of reach: a bare PATH, no LD_LIBRARY_PATH, nothing installed per user.
        let home = stage.appendingPathComponent("home")
        let runtime = stage.appendingPathComponent("run")
        try fm.createDirectory(at: runtime, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let bare = ["PATH": "/usr/bin:/bin", "HOME": home.path, "XDG_DATA_HOME": home.appendingPathComponent("data").path,
                    "XDG_RUNTIME_DIR": runtime.path]
        let out = stage.appendingPathComponent("arpeggios.wav")
        let r = try run(root.appendingPathComponent("bin/ddsp-piano").path,
                        ["render", root.appendingPathComponent("share/doc/ddsp-piano/examples/arpeggios.mid").path, out.path],
                        environment: bare, timeout: 120)
        print("installed render: \(r.output.trimmingCharacters(in: .newlines))")
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("dafx22 model, piano 2018"), r.output)
        let info = try run(root.appendingPathComponent("bin/ddsp-piano").path, ["weights", "info"], environment: bare, timeout: 60)
        XCTAssertTrue(info.output.contains(root.appendingPathComponent("share/ddsp-piano/weights/dafx22.safetensors").path), info.output)

        // The installed daemon starts on null audio with the installed weights and stops on SIGINT.
        let d = Process()
        d.executableURL = root.appendingPathComponent("bin/ddsp-pianod")
        d.arguments = ["--audio", "null", "--config", "2011"]   // a preset by name, from the installation
        d.environment = bare
        let pipe = Pipe()
        d.standardOutput = pipe
        d.standardError = pipe
        try d.run()
        var text = ""
        let deadline = Date().addingTimeInterval(60)
        let reader = pipe.fileHandleForReading
        while Date() < deadline && !text.contains("playing piano") && d.isRunning {
            let chunk = reader.availableData
            if chunk.isEmpty { usleep(50_000) } else { text += String(decoding: chunk, as: UTF8.self) }
        }
        d.interrupt()
        d.waitUntilExit()
        print("installed daemon: \(text.trimmingCharacters(in: .newlines))")
        XCTAssertTrue(text.contains("playing piano 4 (2011) of dafx22"), text)
        XCTAssertEqual(d.terminationStatus, 0)
    }

    /// `make deb`: the package's name and last line, its files in their FHS places (the unit in
    /// /usr/lib/systemd/user/), dependencies from dpkg-shlibdeps, and lintian without errors
    /// (make deb fails otherwise). Installing it with apt is CI's part (.ci/check-deb, as root).
    func testMakeDebBuildsACleanPackage() throws {
        guard let make = DaemonSupport.tool("make") else { print("skipped: make is not installed"); throw XCTSkip("no make") }
        guard DaemonSupport.tool("dpkg-shlibdeps") != nil else {
            print("skipped: dpkg-shlibdeps is not installed (dpkg-dev)")
            throw XCTSkip("no dpkg-dev")
        }
        let out = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        let started = Date()
        let m = try run(make.path, ["--no-print-directory", "deb", "DEBDIR=\(out.path)"], directory: TestKit.packageRoot)
        print(String(format: "make deb: exit %d in %.0f s", m.status, Date().timeIntervalSince(started)))
        XCTAssertEqual(m.status, 0, String(m.output.suffix(3000)))
        guard m.status == 0 else { return }
        let lines = m.output.split(separator: "\n").map(String.init)
        let deb = try XCTUnwrap(lines.last)
        XCTAssertEqual(URL(fileURLWithPath: deb).lastPathComponent, "ddsp-piano_\(PianoVersion.current)_amd64.deb")
        XCTAssertTrue(FileManager.default.fileExists(atPath: deb), "the last line names the package")
        let lintianErrors = lines.filter { $0.hasPrefix("E: ") }
        XCTAssertEqual(lintianErrors, [], "lintian errors")
        print("lintian: \(lines.filter { $0.hasPrefix("W: ") }.count) warnings, \(lintianErrors.count) errors")

        let dpkg = try XCTUnwrap(DaemonSupport.tool("dpkg-deb"))
        let fields = try run(dpkg.path, ["--field", deb, "Package", "Version", "Depends", "Installed-Size"])
        print(fields.output)
        for library in ["libopenblas0", "libjack", "libasound2", "liblo7", "libsndfile1", "libsoxr0", "libkissfft"] {
            XCTAssertTrue(fields.output.contains(library), "Depends names \(library)")
        }
        XCTAssertFalse(fields.output.lowercased().contains("swift"), "no Swift package needed")
        let contents = try run(dpkg.path, ["--contents", deb])
        for path in ["./usr/bin/ddsp-piano", "./usr/bin/ddsp-pianod", "./usr/bin/ddsp-piano-train",
                     "./usr/lib/systemd/user/ddsp-pianod.service", "./usr/share/ddsp-piano/weights/dafx22.safetensors",
                     "./usr/share/ddsp-piano/presets/2018.toml", "./usr/share/man/man1/ddsp-pianod.1.gz",
                     "./usr/share/doc/ddsp-piano/copyright", "./usr/share/bash-completion/completions/ddsp-piano",
                     "./usr/lib/lv2/ddsp-piano.lv2/ddsp-piano.so", "./usr/lib/lv2/ddsp-piano.lv2/manifest.ttl"] {
            XCTAssertTrue(contents.output.contains(" \(path)\n") || contents.output.hasSuffix(" \(path)"), "the package holds \(path)")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: deb)[.size] as? Int) ?? 0
        print(String(format: "package: %.1f MB", Double(size) / 1e6))
    }
}
