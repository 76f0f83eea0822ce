using System.Runtime.InteropServices;
using System.Text;

namespace MiniGpt.Data;

/// <summary>Reading the inputs the trainer takes: UTF-8 text, or nanoGPT-style .bin token files.</summary>
public static class TokenFile
{
    public static bool IsTokenFile(string path) => path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Raw little-endian uint16 tokens, no header (nanoGPT's prepare.py format); checks every id read against
    /// vocab. maxTokens: read only the first that many (an evaluation of a few windows need not read a large file whole).
    /// </summary>
    public static int[] ReadBin(string path, int vocab, long maxTokens = long.MaxValue)
    {
        CheckExists(path);
        long len = new FileInfo(path).Length;
        if (len == 0) throw new UserError($"token file '{path}' is empty: give a file with at least one window of tokens");
        if (len % 2 != 0) throw new UserError($"token file '{path}' has an odd number of bytes ({len}): a .bin must hold little-endian uint16 tokens");
        long count = Math.Min(len / 2, maxTokens);
        if (count > Array.MaxLength) throw new UserError($"token file '{path}' is too large to load");
        var raw = new ushort[count];
        using (var fs = File.OpenRead(path)) fs.ReadExactly(MemoryMarshal.AsBytes(raw.AsSpan()));
        var ids = new int[raw.Length];
        for (int i = 0; i < raw.Length; i++)
        {
            if (raw[i] >= vocab)
                throw new UserError($"token file '{path}': token {raw[i]} at index {i} is ≥ the vocabulary size {vocab}: pass the right --d-vocab");
            ids[i] = raw[i];
        }
        return ids;
    }

    public static void WriteBin(string path, ReadOnlySpan<int> tokens)
    {
        var raw = new ushort[tokens.Length];
        for (int i = 0; i < tokens.Length; i++) raw[i] = checked((ushort)tokens[i]);
        File.WriteAllBytes(path, MemoryMarshal.AsBytes(raw.AsSpan()).ToArray());
    }

    /// <summary>Reads strict UTF-8 (invalid bytes are an error, not silently replaced).</summary>
    public static string ReadText(string path)
    {
        CheckExists(path);
        string text;
        try { text = File.ReadAllText(path, new UTF8Encoding(false, throwOnInvalidBytes: true)); }
        catch (DecoderFallbackException) { throw new UserError($"'{path}' is not valid UTF-8 text: give a UTF-8 text file or a .bin token file"); }
        if (text.Length == 0) throw new UserError($"'{path}' is empty: give a text file with at least one window of characters");
        return text;
    }

    public static void CheckExists(string path)
    {
        if (Directory.Exists(path)) throw new UserError($"'{path}' is a directory: give a file");
        if (!File.Exists(path)) throw new UserError($"data file '{path}' does not exist: check the path");
    }
}
