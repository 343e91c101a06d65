import Foundation
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Downloads a whole file into memory (weights are a few MB), over HTTP(S) through
/// URLSession (libcurl on Linux), or from a `file://` URL for offline mirrors.
/// Failures are `WeightStoreError`s naming the URL: network problem, HTTP status, size.
public enum Download {
    /// Bytes received so far, and the total when the server announced it.
    public typealias Progress = @Sendable (_ received: Int64, _ expected: Int64?) -> Void

    /// Refuse anything larger: a mirror serving a wrong, huge file must not exhaust memory.
    public static let maxBytes: Int64 = 1 << 30

    /// - Parameter expectedSize: the size the file is pinned to, if any: a server announcing
    ///   another length, or sending more, is refused at once (the caller still checks the size
    ///   of what arrived).
    public static func fetch(_ url: URL, timeout: TimeInterval = 60, expectedSize: Int64? = nil,
                             progress: Progress? = nil) throws -> [UInt8] {
        if url.isFileURL {
            let bytes = try WeightStore.readBytes(url, limit: Int(maxBytes))
            progress?(Int64(bytes.count), Int64(bytes.count))
            return bytes
        }
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw WeightStoreError(file: url.absoluteString, problem: "unsupported URL scheme (use http, https or file)", code: .usage)
        }
        // Foundation's URLSession creates empty cookie and cache folders named after the
        // executable's directory (~/.local/share/bin, ~/.cache/org.swift.foundation.URLCache/...);
        // a one-off download should leave nothing behind.
        let footprint = DownloadFootprint()
        defer { footprint.removeNewEmptyDirectories() }
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        config.timeoutIntervalForResource = max(timeout, 600)
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        let delegate = DownloadDelegate(progress: progress, limit: expectedSize.map { min($0, maxBytes) } ?? maxBytes)
        let session = URLSession(configuration: config, delegate: delegate, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        let task = session.dataTask(with: url)
        task.resume()
        // The resource timeout ends the task first; this bound only guards against a stuck session.
        if delegate.done.wait(timeout: .now() + config.timeoutIntervalForResource + 30) == .timedOut {
            task.cancel()
            throw WeightStoreError(file: url.absoluteString, problem: "download timed out", code: .download)
        }
        let (data, response, error, tooLarge) = delegate.result()
        if tooLarge {
            if let expectedSize {
                let announced = response.map { $0.expectedContentLength } ?? -1
                let got = announced >= 0 ? "the server sends \(announced)" : "the server sent more"
                throw WeightStoreError(file: url.absoluteString, problem: "size mismatch: expected \(expectedSize) bytes, \(got)", code: .download)
            }
            throw WeightStoreError(file: url.absoluteString, problem: "refusing a download larger than \(maxBytes) bytes", code: .download)
        }
        if let error {
            throw WeightStoreError(file: url.absoluteString, problem: describe(error), code: .download)
        }
        guard let http = response else {
            throw WeightStoreError(file: url.absoluteString, problem: "no HTTP response", code: .download)
        }
        guard (200..<300).contains(http.statusCode) else {
            let reason = HTTPURLResponse.localizedString(forStatusCode: http.statusCode)
            throw WeightStoreError(file: url.absoluteString, problem: "HTTP \(http.statusCode) \(reason)", code: .download)
        }
        if http.expectedContentLength >= 0, Int64(data.count) != http.expectedContentLength {
            throw WeightStoreError(file: url.absoluteString, problem: "download incomplete (\(data.count) of \(http.expectedContentLength) bytes)", code: .download)
        }
        if let expectedSize, Int64(data.count) != expectedSize {
            throw WeightStoreError(file: url.absoluteString, problem: "size mismatch: expected \(expectedSize) bytes, got \(data.count)\(Int64(data.count) < expectedSize ? " (truncated?)" : ""), code: .download)")
        }
        return [UInt8](data)
    }

    /// A readable reason for URLSession's error codes (its own descriptions are often just a number on Linux).
    static func describe(_ error: Error) -> String {
        let ns = error as NSError
        guard ns.domain == NSURLErrorDomain else { return ns.localizedDescription }
        switch URLError.Code(rawValue: ns.code) {
        case .cannotConnectToHost: return "cannot connect to the server (connection refused)"
        case .cannotFindHost, .dnsLookupFailed: return "cannot resolve the host name"
        case .notConnectedToInternet: return "no network connection"
        case .timedOut: return "the connection timed out"
        case .networkConnectionLost: return "the connection was lost during the download"
        case .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate,
             .serverCertificateNotYetValid, .serverCertificateHasUnknownRoot, .clientCertificateRejected:
            return "TLS connection failed (\(ns.localizedDescription))"
        case .badServerResponse: return "bad response from the server"
        case .httpTooManyRedirects: return "too many redirects"
        case .cancelled: return "download cancelled"
        default: return "network error \(ns.code) (\(ns.localizedDescription))"
        }
    }
}

/// Collects the body and reports progress; results are read after `done` is signalled.
// @unchecked Sendable: URLSession calls it on its delegate queue only; results are read after `done` is signalled.
final class DownloadDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private let progress: Download.Progress?
    /// The most bytes accepted: the pinned size when there is one, else Download.maxBytes.
    private let limit: Int64
    private var data = Data()
    private var response: HTTPURLResponse?
    private var error: Error?
    private var tooLarge = false

    init(progress: Download.Progress?, limit: Int64 = Download.maxBytes) {
        self.progress = progress
        self.limit = limit
    }

    func result() -> (Data, HTTPURLResponse?, Error?, Bool) {
        lock.lock()
        defer { lock.unlock() }
        return (data, response, error, tooLarge)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        lock.lock()
        let http = response as? HTTPURLResponse
        self.response = http
        // A successful response announcing more than the limit is refused before its body.
        let over = http.map { (200..<300).contains($0.statusCode) && $0.expectedContentLength > limit } ?? false
        if over { tooLarge = true }
        lock.unlock()
        completionHandler(over ? .cancel : .allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive chunk: Data) {
        lock.lock()
        data.append(chunk)
        let received = Int64(data.count)
        let expected = response.flatMap { $0.expectedContentLength >= 0 ? $0.expectedContentLength : nil }
        let over = received > limit
        if over { tooLarge = true }
        let ok = response.map { (200..<300).contains($0.statusCode) } ?? false
        lock.unlock()
        if over { dataTask.cancel(); return }
        if ok { progress?(received, expected) }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        lock.lock()
        if let error, !tooLarge { self.error = error }
        if self.response == nil { self.response = task.response as? HTTPURLResponse }
        lock.unlock()
        done.signal()
    }
}

/// The folders URLSession may create as a side effect, noted before a download so that
/// those that are new and still empty afterwards can be removed (rmdir never removes content).
struct DownloadFootprint {
    let urlCache: String
    let candidates: [String]       // deepest first, so a new parent is empty when it is tried
    let existed: Set<String>
    let urlCacheChildren: Set<String>

    init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        func base(_ variable: String, _ fallback: String) -> String {
            if let v = environment[variable], v.hasPrefix("/") { return v }
            return (environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()) + "/" + fallback
        }
        let data = base("XDG_DATA_HOME", ".local/share"), cache = base("XDG_CACHE_HOME", ".cache")
        // Foundation names the cookie folder after the main bundle (the executable's directory).
        let bundleName = ((Bundle.main.bundlePath as NSString).lastPathComponent as NSString).deletingPathExtension
        urlCache = cache + "/org.swift.foundation.URLCache"
        candidates = [data + "/" + bundleName, urlCache, cache, data, (data as NSString).deletingLastPathComponent]
        existed = Set(candidates.filter { FileManager.default.fileExists(atPath: $0) })
        urlCacheChildren = Set((try? FileManager.default.contentsOfDirectory(atPath: urlCache)) ?? [])
    }

    func removeNewEmptyDirectories() {
        let children = Set((try? FileManager.default.contentsOfDirectory(atPath: urlCache)) ?? [])
        for name in children.subtracting(urlCacheChildren) { _ = rmdir(urlCache + "/" + name) }
        for path in candidates where !existed.contains(path) { _ = rmdir(path) }
    }
}
