using System.Diagnostics;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Monitoring.Stream.Store;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Store;

/// <summary>
/// The store's promise with a real crash: the engine's executable is killed (SIGKILL) while it
/// writes, and the store folder then holds only complete, readable Arrow files.
/// </summary>
public class KilledProcessTests
{
    private static string ServerAssembly()
    {
        // The test project references the server project, so it is built with the same configuration.
        string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        string path = Path.Combine(RepositoryPaths.Root, "src", "Monitoring.Stream.Server", "bin", configuration, "net10.0", "monitoring-stream.dll");
        Assert.True(File.Exists(path), $"the server is not built at {path}");
        return path;
    }

    /// <summary>Keeps the last 40 lines the demo printed, for a failure's message.</summary>
    private static void Keep(System.Collections.Concurrent.ConcurrentQueue<string> lines, string? line)
    {
        if (line is null)
        {
            return;
        }

        lines.Enqueue(line);
        while (lines.Count > 40 && lines.TryDequeue(out _))
        {
        }
    }

    private static string FilesIn(string directory) => !Directory.Exists(directory) ? "no store folder"
        : $"{Directory.GetFiles(directory, "*" + ArrowFileStore.Extension).Length} published and {Directory.GetFiles(directory, "*" + ArrowFileStore.PartialExtension).Length} partial files";

    [Fact]
    public async Task KilledWhileWriting_StoreHoldsOnlyCompleteReadableFiles()
    {
        using var data = new TempDirectory();
        string windows = Path.Combine(data.Path, "windows");
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { ServerAssembly(), "demo", "--points", "4000000000", "--data-dir", data.Path, "--max-file-mb", "1" })
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        process.OutputDataReceived += (_, e) => Keep(output, e.Data);
        process.ErrorDataReceived += (_, e) => Keep(output, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            // Wait until files have been published and another one is being written, then kill.
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(90) && !process.HasExited &&
                !(Directory.Exists(windows) && Directory.GetFiles(windows, "*" + ArrowFileStore.Extension).Length >= 2 &&
                  Directory.GetFiles(windows, "*" + ArrowFileStore.PartialExtension).Length >= 1))
            {
                await Task.Delay(50);
            }

            Assert.False(process.HasExited,
                $"the demo ended (exit code {(process.HasExited ? process.ExitCode : 0)}) after {clock.Elapsed.TotalSeconds:F1} s, before it could be killed mid-write; " +
                $"{FilesIn(windows)}; its last lines:\n{string.Join('\n', output)}");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), "no file was published within 90 s");
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true); // SIGKILL: no flush, no footer, no rename
            }

            await process.WaitForExitAsync();
        }

        int leftovers = Directory.GetFiles(windows, "*" + ArrowFileStore.PartialExtension).Length;

        // Opening the store (as a restarted engine does) removes what the killed one left half-written.
        var store = new ArrowFileStore(new ArrowFileStoreOptions { Directory = windows });
        await store.DisposeAsync();

        Assert.Equal(leftovers, store.PartialFilesRemoved);
        Assert.Empty(Directory.GetFiles(windows, "*" + ArrowFileStore.PartialExtension));
        string[] published = Directory.GetFiles(windows, "*" + ArrowFileStore.Extension);
        Assert.True(published.Length >= 2, $"{published.Length} files published");
        foreach (string file in published)
        {
            using FileStream stream = File.OpenRead(file);
            using var reader = new ArrowFileReader(stream);
            int batches = await reader.RecordBatchCountAsync();
            Assert.True(batches > 0, $"{file} holds no batch");
            long rows = 0;
            for (int i = 0; i < batches; i++)
            {
                using RecordBatch batch = await reader.ReadRecordBatchAsync(i);
                Assert.Equal("sketch", batch.Schema.FieldsList[^1].Name);
                rows += batch.Length;
            }

            Assert.True(rows > 0, $"{file} holds no rows");
        }
    }
}
