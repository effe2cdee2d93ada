using System.Diagnostics;
using System.Globalization;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;
using Monitoring.Stream.Tests.Sinks;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Probe 7: the local Arrow store's open-time checks, from docs/arrow-schema.md ("A damaged file is set aside": ARROW1
/// at both ends, a footer length within the file, a footer and last batch the reader accepts; the file is moved into
/// damaged/ with a reason, never read as data) and docs/operations.md ("Opening meets a file it cannot recover, check or
/// move: counted in WriteErrors with the file in LastError; the store opens anyway").
/// </summary>
public class ArrowStoreProbe7BlackBoxTests
{
    private static readonly string[] s_reasons =
    [
        "too short for an Arrow file", "not an Arrow file", "no Arrow footer", "footer length", "unreadable Arrow footer or batch",
        "schema version", "column",
    ];

    private static async Task<byte[]> PublishedFileAsync()
    {
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 3, series: 10);
        using var dir = new TempDirectory();
        var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = dir.Path });
        foreach (WindowBatch batch in batches)
        {
            await store.WriteAsync(batch, CancellationToken.None);
        }

        await store.CompleteAsync(CancellationToken.None);
        await store.DisposeAsync();
        return await File.ReadAllBytesAsync(Assert.Single(store.PublishedFiles()));
    }

    private static string FileName(int n) =>
        string.Create(CultureInfo.InvariantCulture, $"windows-20270115T08{n / 60 % 60:00}{n % 60:00}.000Z-1-{n:000000}{ArrowFileStore.Extension}");

    [Fact]
    public async Task Open_PublishedFileCutAtEveryOffsetOfItsFooterAndEndMarker_EachSetAsideWithADocumentedReasonValidFileKept()
    {
        byte[] good = await PublishedFileAsync();
        int footerLength = BitConverter.ToInt32(good, good.Length - 10);
        Assert.Equal("ARROW1", System.Text.Encoding.ASCII.GetString(good, good.Length - 6, 6));
        Assert.InRange(footerLength, 1, good.Length);

        // From 8 bytes before the footer (the end-of-stream marker) to one byte short of the whole file.
        int from = good.Length - 10 - footerLength - 8;
        using var dir = new TempDirectory();
        string valid = Path.Combine(dir.Path, FileName(0));
        await File.WriteAllBytesAsync(valid, good);
        var cuts = new Dictionary<string, int>();
        for (int cut = from; cut < good.Length; cut++)
        {
            string name = Path.Combine(dir.Path, FileName(cut - from + 1));
            await File.WriteAllBytesAsync(name, good.AsSpan(0, cut).ToArray());
            cuts[name] = cut;
        }

        var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = dir.Path });
        await store.DisposeAsync();

        Assert.Equal([valid], store.PublishedFiles());
        Assert.Equal(cuts.Count, store.FilesSetAside);
        Assert.Equal(0, store.WriteErrors);
        foreach (SetAsideFile aside in store.SetAsideFiles)
        {
            Assert.True(cuts.ContainsKey(aside.OriginalPath), $"set aside a file that was not cut: {aside.OriginalPath}");
            Assert.True(s_reasons.Any(r => aside.Reason.Contains(r, StringComparison.Ordinal)), $"cut at {cuts[aside.OriginalPath]} of {good.Length}: undocumented reason '{aside.Reason}'");
            Assert.False(File.Exists(aside.OriginalPath));
            Assert.Equal(good.AsSpan(0, cuts[aside.OriginalPath]).ToArray(), await File.ReadAllBytesAsync(aside.Path));
            Assert.True(File.Exists(aside.Path + ".reason.txt"), $"no reason file beside {aside.Path}");
        }
    }

    [Fact]
    public async Task Open_FooterBytesFlippedOneAtATimeAndFilesReplacedByGarbage_OpensAndEveryFileEitherKeptOrSetAside()
    {
        byte[] good = await PublishedFileAsync();
        int footerLength = BitConverter.ToInt32(good, good.Length - 10);
        int footerStart = good.Length - 10 - footerLength;
        using var dir = new TempDirectory();
        var random = new Random(77);
        var names = new List<string>();
        for (int i = 0; i < footerLength + 10; i++)
        {
            byte[] damaged = (byte[])good.Clone();
            damaged[footerStart + i] ^= (byte)(1 << random.Next(8));
            string name = Path.Combine(dir.Path, FileName(names.Count));
            await File.WriteAllBytesAsync(name, damaged);
            names.Add(name);
        }

        foreach (int size in (int[])[0, 1, 6, 7, 12, 100, 5000])
        {
            byte[] garbage = new byte[size];
            random.NextBytes(garbage);
            string name = Path.Combine(dir.Path, FileName(names.Count));
            await File.WriteAllBytesAsync(name, garbage);
            names.Add(name);
        }

        string magicOnly = Path.Combine(dir.Path, FileName(names.Count));
        await File.WriteAllBytesAsync(magicOnly, [.. "ARROW1\0\0"u8, .. new byte[64], .. "ARROW1"u8]);
        names.Add(magicOnly);

        ArrowFileStore store = new(new ArrowFileStoreOptions { Directory = dir.Path });
        await store.DisposeAsync();

        IReadOnlyList<string> kept = store.PublishedFiles();
        IReadOnlyList<SetAsideFile> aside = store.SetAsideFiles;
        Assert.Equal(names.Count, kept.Count + aside.Count);
        Assert.Equal(names.Order(StringComparer.Ordinal), kept.Concat(aside.Select(a => a.OriginalPath)).Order(StringComparer.Ordinal));
        Assert.All(aside, a => Assert.True(s_reasons.Any(r => a.Reason.Contains(r, StringComparison.Ordinal)), $"undocumented reason '{a.Reason}'"));
        Assert.Contains(magicOnly, aside.Select(a => a.OriginalPath));
        Assert.Equal(8, aside.Count(a => names.IndexOf(a.OriginalPath) >= footerLength + 10));
    }

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        args.ToList().ForEach(start.ArgumentList.Add);
        using Process process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(30_000), $"{file} did not end");
        return (process.ExitCode, output);
    }

    /// <summary>
    /// A folder on a read-only file system (a tmpfs remounted read-only: as root, a chmod would not stop anything) holding
    /// a damaged file and a partial file: the store opens, counts what it could not move or recover, and a write fails
    /// with an IOException instead of hanging or crashing.
    /// </summary>
    [Fact]
    public async Task Open_ReadOnlyFolderWithDamagedAndPartialFiles_OpensCountsTheFailuresAndWritesThrowIOException()
    {
        Assert.True(OperatingSystem.IsLinux(), "the read-only folder is a read-only tmpfs, which needs Linux");
        string path = Path.Combine(Path.GetTempPath(), "ms-ro-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        (int code, string output) = Run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", path);
        if (code != 0)
        {
            Directory.Delete(path);
            Assert.Fail($"mounting a tmpfs on {path} was refused (exit {code}: {output.Trim()}): this test needs root or CAP_SYS_ADMIN.");
        }

        try
        {
            byte[] good = await PublishedFileAsync();
            await File.WriteAllBytesAsync(Path.Combine(path, FileName(1)), good);
            await File.WriteAllBytesAsync(Path.Combine(path, FileName(2)), good.AsSpan(0, good.Length / 2).ToArray());
            await File.WriteAllBytesAsync(Path.Combine(path, FileName(3).Replace(ArrowFileStore.Extension, ArrowFileStore.PartialExtension, StringComparison.Ordinal)), good.AsSpan(0, good.Length - 20).ToArray());
            (code, output) = Run("mount", "-o", "remount,ro", path);
            Assert.True(code == 0, $"remounting read-only failed: {output}");

            var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = path });
            Assert.True(store.WriteErrors >= 2, $"write errors {store.WriteErrors}: the damaged file's move and the partial file's recovery both failed on a read-only folder");
            Assert.NotNull(store.LastError);
            Assert.Equal(1, store.PendingRecoveries);
            Assert.Equal(0, store.FilesSetAside);
            IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 1, series: 3);
            await Assert.ThrowsAnyAsync<IOException>(() => store.WriteAsync(batches[0], CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(15)));
            Assert.True(store.WriteErrors >= 3, $"the failed write is not counted: write errors {store.WriteErrors}");
            await store.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(15));
        }
        finally
        {
            Run("umount", path);
            Directory.Delete(path, recursive: true);
        }
    }
}
