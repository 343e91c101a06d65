import Foundation

/// Comma-separated values as spreadsheets and pandas write them (RFC 4180): quoted fields may
/// hold commas, doubled quotes and newlines; CRLF or LF line ends.
public enum CSV {
    /// The records of `text`, each a list of fields (a trailing empty line gives no record).
    public static func records(_ text: String) -> [[String]] {
        var rows: [[String]] = [], row: [String] = [], field = ""
        var quoted = false, justClosedQuote = false
        var it = text.makeIterator()
        while let c = it.next() {
            if quoted {
                if c == "\"" { quoted = false; justClosedQuote = true } else { field.append(c) }
                continue
            }
            switch c {
            case "\"":
                if justClosedQuote { field.append("\"") }   // "" inside quotes
                quoted = true
            case ",": row.append(field); field = ""
            case "\n", "\r\n":
                row.append(field); field = ""; rows.append(row); row = []
            case "\r": break
            default: field.append(c)
            }
            justClosedQuote = false
        }
        if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
        return rows
    }
}
