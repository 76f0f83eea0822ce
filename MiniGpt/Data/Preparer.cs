using System.Buffers.Binary;
using System.Text;

namespace MiniGpt.Data;

/// <summary>
/// Tokenizes a text corpus once into train.bin / val.bin + meta.json (see <see cref="PreparedMeta"/>),
/// streaming: the text is read in chunks and the tokens go to disk, so memory stays at a few chunks
/// whatever the corpus size. The split is the trainer's: the first 90 % of the tokens train, the
/// rest validate, so a prepared corpus trains exactly as the same text given directly.
/// </summary>
public static class Preparer
{
    /// <summary>BPE merges are learned from at most this many characters of the start of the corpus.</summary>
    public const int LearnChars = 16 << 20;

    public sealed record Result(PreparedMeta Meta, ITokenizer Tokenizer);

    /// <param name="progress">called with (bytes of text read, total bytes) after each chunk of a pass over the text</param>
    /// <param name="chunkChars">characters per chunk; 0: total/64 within [64 Ki, 1 Mi], so that a small corpus reports often too</param>
    /// <param name="phase">called as each phase starts (reading the character set, learning the BPE merges, encoding,
    /// writing the token files), so a caller can show what runs before the first chunk is done: learning bpe:512 from
    /// 1 MB takes seconds and reports nothing else</param>
    public static Result Run(string textPath, string tokenizerName, string outDir, Action<long, long>? progress = null, int chunkChars = 0,
        Action<string>? phase = null)
    {
        Tokenizers.CheckName(tokenizerName);
        TokenFile.CheckExists(textPath);
        long total = new FileInfo(textPath).Length;
        if (total == 0) throw new UserError($"'{textPath}' is empty: give a text file");
        if (chunkChars <= 0) chunkChars = (int)Math.Clamp(total / 64, 1 << 16, 1 << 20);
        Directory.CreateDirectory(outDir);
        string mb = $"{total / 1e6:F1} MB";

        // 1. the tokenizer: characters need the whole file's set; BPE and tiktoken learn from a prefix
        ITokenizer? tok = null;
        Func<string, int[]> encode;
        SortedSet<int>? seen = null;
        if (tokenizerName == "char")
        {
            phase?.Invoke($"reading the character set of {mb}");
            var runes = new HashSet<Rune>();
            foreach (var chunk in Chunks(textPath, chunkChars, progress == null ? null : read => progress(read, total))) foreach (var r in chunk.EnumerateRunes()) runes.Add(r);
            var ct = new CharTokenizer(runes);
            tok = ct;
            encode = s => ct.Encode(s, textPath);
        }
        else if (tokenizerName.StartsWith("bpe:", StringComparison.Ordinal))
        {
            phase?.Invoke($"learning the {tokenizerName} merges from {(total > LearnChars ? $"the first {LearnChars >> 20} Mi characters" : mb)}");
            var bt = (BpeTokens)Tokenizers.Create(tokenizerName, Prefix(textPath, LearnChars));
            tok = bt;
            encode = s => bt.Encode(s, textPath);
        }
        else
        {
            // tiktoken: encode with the full vocabulary first; the compacted ids are known only at the end
            phase?.Invoke($"loading {tokenizerName}");
            var full = TiktokenTokens.Load(tokenizerName);
            seen = new SortedSet<int>();
            encode = s => { var ids = full.EncodeToIds(s); foreach (int id in ids) seen.Add(id); return [.. ids]; };
        }

        // 2. every token as int32 into a scratch file
        string scratch = Path.Combine(outDir, $".tokens.{Environment.ProcessId}.tmp");
        long count = 0;
        phase?.Invoke($"encoding {mb}");
        try
        {
            using (var fs = new FileStream(scratch, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                var buf = new byte[4 << 16];
                foreach (var chunk in Chunks(textPath, chunkChars, progress == null ? null : read => progress(read, total)))
                {
                    int[] ids = encode(chunk);
                    for (int i = 0; i < ids.Length; i += 1 << 16)
                    {
                        int n = Math.Min(1 << 16, ids.Length - i);
                        for (int j = 0; j < n; j++) BinaryPrimitives.WriteInt32LittleEndian(buf.AsSpan(4 * j), ids[i + j]);
                        fs.Write(buf, 0, 4 * n);
                    }
                    count += ids.Length;
                }
            }
            TiktokenTokens? tt = seen != null ? TiktokenTokens.Compact(tokenizerName, seen) : null;
            tok ??= tt!;

            // 3. split and narrow: train.bin, val.bin in the meta's dtype (compacted ids for tiktoken)
            phase?.Invoke($"writing train.bin and val.bin ({count:N0} tokens)");
            long trainCount = (long)(count * 0.9);
            string dtype = PreparedMeta.DtypeFor(tok.VocabSize);
            // meta.json is written last and an earlier one removed first: a prepare stopped between the files leaves a folder
            // without it, which train, eval and circuits refuse, instead of new token files beside the old run's meta.json
            File.Delete(Path.Combine(outDir, PreparedMeta.FileName));
            using (var input = new FileStream(scratch, FileMode.Open, FileAccess.Read, FileShare.None, 1 << 20))
            {
                WriteTokens(Path.Combine(outDir, "train.bin"), input, trainCount, dtype, tt);
                WriteTokens(Path.Combine(outDir, "val.bin"), input, count - trainCount, dtype, tt);
            }
            if (tok is BpeTokens bpe) bpe.WriteFiles(outDir);
            var meta = new PreparedMeta(tok.ToJson(), tok.Name, tok.VocabSize, dtype, trainCount, count - trainCount, Path.GetFileName(textPath));
            meta.Write(outDir);
            return new Result(meta, tok);
        }
        finally { File.Delete(scratch); }
    }

    private static void WriteTokens(string path, FileStream input, long n, string dtype, TiktokenTokens? compact)
    {
        AtomicFile.Write(path, fs =>
        {
            var inBuf = new byte[4 << 16];
            var outBuf = new byte[4 << 16];
            int width = dtype == "uint16" ? 2 : 4;
            for (long done = 0; done < n;)
            {
                int k = (int)Math.Min(1 << 16, n - done);
                input.ReadExactly(inBuf, 0, 4 * k);
                for (int j = 0; j < k; j++)
                {
                    int id = BinaryPrimitives.ReadInt32LittleEndian(inBuf.AsSpan(4 * j));
                    if (compact != null) id = compact.ToModel(id);
                    if (width == 2) BinaryPrimitives.WriteUInt16LittleEndian(outBuf.AsSpan(2 * j), checked((ushort)id));
                    else BinaryPrimitives.WriteUInt32LittleEndian(outBuf.AsSpan(4 * j), checked((uint)id));
                }
                fs.Write(outBuf, 0, width * k);
                done += k;
            }
        });
    }

    private static string Prefix(string path, int maxChars)
    {
        using var r = new StreamReader(path, new UTF8Encoding(false, throwOnInvalidBytes: true));
        var buf = new char[(int)Math.Min(maxChars, new FileInfo(path).Length)];
        int n;
        try { n = r.ReadBlock(buf, 0, buf.Length); }
        catch (DecoderFallbackException) { throw new UserError($"'{path}' is not UTF-8 text: give a UTF-8 text file"); }
        return new string(buf, 0, n);
    }

    /// <summary>
    /// The text in chunks of about chunkChars, each cut just after a newline that a letter follows.
    /// Every split pattern in use (GPT-2's, cl100k's, o200k's) ends a piece there, so encoding the
    /// chunks one by one gives the same tokens as encoding the whole text.
    /// </summary>
    public static IEnumerable<string> Chunks(string path, int chunkChars, Action<long>? bytesRead)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        using var r = new StreamReader(fs, new UTF8Encoding(false, throwOnInvalidBytes: true), false, 1 << 16);
        var buf = new char[chunkChars];
        int have = 0;
        while (true)
        {
            int got;
            try { got = r.ReadBlock(buf, have, buf.Length - have); }
            catch (DecoderFallbackException) { throw new UserError($"'{path}' is not valid UTF-8 text: give a UTF-8 text file"); }
            have += got;
            bool end = got == 0 || have < buf.Length;
            int cut = have;
            if (!end)
            {
                cut = 0;
                for (int i = have - 1; i > 0; i--)
                    if (buf[i - 1] == '\n' && char.IsLetter(buf[i])) { cut = i; break; }
                if (cut == 0) { Array.Resize(ref buf, buf.Length * 2); continue; } // no safe cut yet: read on
            }
            if (cut > 0) yield return new string(buf, 0, cut);
            bytesRead?.Invoke(fs.Position);
            if (end) yield break;
            Array.Copy(buf, cut, buf, 0, have - cut);
            have -= cut;
        }
    }
}
