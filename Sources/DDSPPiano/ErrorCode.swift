/// What kind of failure an error is, for programs: a driver choosing its exit status or control
/// reply, a caller deciding whether to retry, a test. Every error type of the project carries
/// one (`CodedError`), so no code branches on message text; the message (`description`) is
/// for people and stays one line naming the file or option and the problem.
public enum ErrorCode: String, Sendable, CaseIterable, Equatable {
    /// An option, argument or setting out of range, unknown or inconsistent with another.
    case usage
    /// A file, folder, piano or weight file that is not there.
    case notFound
    /// There, but cannot be read (permissions, a directory, I/O errors, too large).
    case unreadable
    /// An output that cannot be created, written or renamed into place.
    case unwritable
    /// A MIDI file that cannot be read or has nothing playable.
    case badMIDI
    /// A weight file or checkpoint that is malformed, incomplete or of another architecture.
    case badWeights
    /// A configuration file or control-socket command that is malformed.
    case badConfig
    /// An audio file that cannot be decoded.
    case badAudio
    /// Training data that cannot be used.
    case badData
    /// A download that failed or did not match its pinned size and checksums.
    case download
    /// Training produced non-finite values.
    case diverged
    /// The system or a server refused: JACK, ALSA, a socket, memory locking.
    case system
    /// A broken invariant of this program (a bug to report).
    case `internal`
}

/// An error with a code; its `description` is the one-line message.
public protocol CodedError: Error, CustomStringConvertible {
    var code: ErrorCode { get }
}

extension Error {
    /// The error's code; `.internal` for errors of other libraries that escaped unwrapped.
    public var errorCode: ErrorCode { (self as? CodedError)?.code ?? .internal }
}
