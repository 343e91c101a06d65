import CLiblo
import DDSPPiano
import Foundation

/// One OSC argument of the types the NSM API uses.
public enum OSCArgument: Equatable, Sendable {
    case string(String), int(Int32), float(Float)
    /// Any other type tag (kept so that a message is shown as it came).
    case other(Character)
}

public struct OSCMessage: Equatable, Sendable {
    public var path: String
    public var arguments: [OSCArgument]
    public init(path: String, arguments: [OSCArgument]) { self.path = path; self.arguments = arguments }
}

/// What a session manager tells the daemon (Non Session Manager API 1.2).
public enum NSMEvent: Equatable, Sendable {
    /// `/reply "/nsm/server/announce" message server_name capabilities`.
    case announced(message: String, server: String, capabilities: String)
    /// `/error "/nsm/server/announce" code message`: the server refused us.
    case refused(code: Int32, message: String)
    /// `/nsm/client/open path display_name client_id`.
    case open(path: String, displayName: String, clientID: String)
    /// `/nsm/client/save`.
    case save
    /// Anything else (session_is_loaded, a malformed message, …): ignored.
    case ignored(String)

    public init(_ m: OSCMessage) {
        let a = m.arguments
        func s(_ i: Int) -> String? { if i < a.count, case .string(let x) = a[i] { return x }; return nil }
        switch m.path {
        case "/reply" where s(0) == "/nsm/server/announce":
            self = .announced(message: s(1) ?? "", server: s(2) ?? "", capabilities: s(3) ?? "")
        case "/error" where s(0) == "/nsm/server/announce":
            var code: Int32 = NSMClient.errGeneral
            if a.count > 1, case .int(let c) = a[1] { code = c }
            self = .refused(code: code, message: s(2) ?? "")
        case "/nsm/client/open":
            if let path = s(0), let display = s(1), let id = s(2), a.count == 3 {
                self = .open(path: path, displayName: display, clientID: id)
            } else {
                self = .ignored("\(m.path) with arguments \(a)")
            }
        case "/nsm/client/save": self = .save
        default: self = .ignored(m.path)
        }
    }
}

/// The daemon's side of a Non Session Manager (API 1.2, OSC over UDP through liblo): announces
/// itself to `NSM_URL`, receives open/save, answers. No thread of its own: the control loop polls
/// `descriptor` with its other descriptors and calls `receive()`; nothing here blocks.
public final class NSMClient {
    public struct Failure: CodedError {
        public var description: String
        public var code: ErrorCode { .system }
    }

    public static let applicationName = "ddsp-piano"
    public static let executableName = "ddsp-pianod"
    /// Optional capabilities the daemon has: none (no :switch: — a client id is the JACK client's
    /// name, which cannot change while it runs; no :dirty:, :progress:, :message:, :optional-gui:).
    public static let capabilities = ""
    public static let apiMajor: Int32 = 1, apiMinor: Int32 = 2
    // The API's error codes the daemon sends.
    public static let errGeneral: Int32 = -1
    public static let errLaunchFailed: Int32 = -4
    public static let errBadProject: Int32 = -9
    public static let errCreateFailed: Int32 = -10

    public let url: String
    private let server: lo_server
    private let address: lo_address
    fileprivate var inbox: [OSCMessage] = []
    /// The server's UDP port (NSM_URL's): messages from any other port are dropped (a session
    /// manager sends from the port it listens on), so that not any process can open or save.
    fileprivate let serverPort: String
    /// Messages dropped for coming from another port.
    public private(set) var foreign = 0
    /// The first of them, for the log.
    public internal(set) var firstForeign: String?

    public init(url: String) throws {
        guard let address = lo_address_new_from_url(url) else {
            throw Failure(description: "NSM_URL '\(url)' is not an OSC URL (osc.udp://HOST:PORT/)")
        }
        // A random UDP port; liblo's own complaints are not printed (the daemon says what matters).
        guard let server = lo_server_new_with_proto(nil, Int32(LO_UDP), { _, _, _ in }) else {
            lo_address_free(address)
            throw Failure(description: "NSM: cannot open a UDP port for OSC")
        }
        self.url = url
        self.serverPort = lo_address_get_port(address).map { String(cString: $0) } ?? ""
        self.address = address
        self.server = server
        lo_server_add_method(server, nil, nil, { path, types, argv, argc, message, user in
            guard let path, let user else { return 1 }
            let me = Unmanaged<NSMClient>.fromOpaque(user).takeUnretainedValue()
            let source = lo_message_get_source(message).flatMap { lo_address_get_port($0) }.map { String(cString: $0) }
            guard source == me.serverPort else {
                me.foreign += 1
                if me.foreign == 1 { me.firstForeign = "\(String(cString: path)) from port \(source ?? "?") (the server's is \(me.serverPort))" }
                return 0
            }
            var args: [OSCArgument] = []
            for i in 0..<Int(argc) {
                guard let tag = types?[i], let arg = argv?[i] else { break }
                switch UInt8(bitPattern: tag) {
                case UInt8(ascii: "s"), UInt8(ascii: "S"):
                    args.append(.string(String(cString: UnsafeRawPointer(arg).assumingMemoryBound(to: CChar.self))))
                case UInt8(ascii: "i"): args.append(.int(arg.pointee.i))
                case UInt8(ascii: "f"): args.append(.float(arg.pointee.f))
                default: args.append(.other(Character(Unicode.Scalar(UInt8(bitPattern: tag)))))
                }
            }
            me.inbox.append(OSCMessage(path: String(cString: path), arguments: args))
            return 0
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        lo_server_free(server)
        lo_address_free(address)
    }

    /// The UDP socket to poll for the server's messages.
    public var descriptor: Int32 { lo_server_get_socket_fd(server) }
    /// Our UDP port (the server answers to it).
    public var port: Int32 { lo_server_get_port(server) }

    /// The messages waiting on the socket (none: an empty list at once).
    public func receive() -> [OSCMessage] {
        while lo_server_recv_noblock(server, 0) > 0 {}
        defer { inbox.removeAll() }
        return inbox
    }

    /// Sends from our port (so that replies come back to it). False when it could not be sent.
    @discardableResult
    public func send(_ path: String, _ arguments: [OSCArgument]) -> Bool {
        guard let m = lo_message_new() else { return false }
        defer { lo_message_free(m) }
        for a in arguments {
            switch a {
            case .string(let s): lo_message_add_string(m, s)
            case .int(let i): lo_message_add_int32(m, i)
            case .float(let f): lo_message_add_float(m, f)
            case .other: return false
            }
        }
        return lo_send_message_from(address, server, path, m) >= 0
    }

    /// `/nsm/server/announce s:application s:capabilities s:executable i:1 i:2 i:pid`.
    @discardableResult
    public func announce() -> Bool {
        send("/nsm/server/announce", [.string(Self.applicationName), .string(Self.capabilities), .string(Self.executableName),
                                      .int(Self.apiMajor), .int(Self.apiMinor), .int(Int32(getpid()))])
    }

    public func reply(to path: String, _ message: String = "ok") { send("/reply", [.string(path), .string(message)]) }

    public func error(to path: String, code: Int32, _ message: String) {
        send("/error", [.string(path), .int(code), .string(message)])
    }
}
