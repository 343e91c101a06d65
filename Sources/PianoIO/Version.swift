/// The release of ddsp-piano: the programs' `--version`, the man pages and the Debian package
/// (the Makefile reads this line) all take it from here.
public enum PianoVersion {
    public static let current = "0.1.0"
}
