import Foundation
import PianoDaemon
import PianoTestKit
import XCTest

final class SystemdUnitTests: XCTestCase {
    /// `systemd-analyze verify` on the unit, its ExecStart pointed at the built daemon.
    func testUnitVerifies() throws {
        guard let analyze = DaemonSupport.tool("systemd-analyze") else {
            print("skipped: systemd-analyze is not installed")
            throw XCTSkip("no systemd-analyze")
        }
        let daemon = try TestKit.executable("ddsp-pianod")
        let dir = try DaemonSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = try String(contentsOf: TestKit.packageRoot.appendingPathComponent("systemd/ddsp-pianod.service"), encoding: .utf8)
        XCTAssertTrue(text.contains("Type=notify") && text.contains("Restart=on-failure") && text.contains("LimitRTPRIO="))
        let unit = dir.appendingPathComponent("ddsp-pianod.service")
        try text.replacingOccurrences(of: "/usr/local/bin/ddsp-pianod", with: daemon.path).write(to: unit, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = analyze
        p.arguments = ["verify", unit.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, out)
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines), "", out)
    }
}
