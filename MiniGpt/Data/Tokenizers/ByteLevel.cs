using System.Text.RegularExpressions;

namespace MiniGpt.Data;

/// <summary>
/// The byte-level conventions of GPT-2's BPE files, which Microsoft.ML.Tokenizers' BPE reads in
/// byte-level mode: every byte is written as one printable character (bytes that are printable
/// Latin-1 — '!'…'~', '¡'…'¬', '®'…'ÿ' — stand for themselves; the other 68, in increasing order,
/// become U+0100, U+0101, …, so a space is 'Ġ' U+0120 and a newline 'Ċ' U+010A), and text is first
/// split into pieces that no merge crosses.
/// </summary>
public static class ByteLevel
{
    /// <summary>
    /// GPT-2's split: contractions, an optional space and a run of letters, of digits or of other
    /// symbols, then whitespace (a run of it keeps its last space for the next word). Every character
    /// falls in some piece, so the pieces concatenate back to the text.
    /// </summary>
    public const string SplitPattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static readonly Regex Split = new(SplitPattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);

    private static readonly char[] ByteToChar = BuildMap();

    private static char[] BuildMap()
    {
        var map = new char[256];
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= '¡' and <= '¬' or >= '®' and <= 'ÿ';
            map[b] = printable ? (char)b : (char)(256 + extra++);
        }
        return map;
    }

    public static char Char(byte b) => ByteToChar[b];

    /// <summary>Bytes → their printable-character spelling in vocab.json and merges.txt.</summary>
    public static string Spell(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }
}
