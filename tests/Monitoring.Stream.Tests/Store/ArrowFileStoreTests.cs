using Apache.Arrow;
using Apache.Arrow.Ipc;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Store;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Store;

public class ArrowFileStoreTests
{
    private const long T0 = 1_800_000_000_000;

    private static async Task<(ArrowFileStore Store, MetricsPipeline Pipeline)> RunAsync(string directory, int windows, ArrowFileStoreOptions? options = null, FakeTimeProvider? time = null)
    {
        time ??= new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0 + (windows * 10_000L)));
        options ??= new ArrowFileStoreOptions();
        options.Directory = directory;
        var store = new ArrowFileStore(options, time);
        var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 2, TimeProvider = time, AllowedLateness = TimeSpan.Zero }, [store]);
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("test"))
        {
            for (int w = 0; w < windows; w++)
            {
                for (int s = 0; s < 10; s++)
                {
                    writer.Write("temperature_celsius", [new Label("sensor", "s" + s)], s + (w * 0.5), T0 + (w * 10_000L) + s);
                }
            }
        }

        await pipeline.StopAsync();
        return (store, pipeline);
    }

    private static List<RecordBatch> ReadAll(string file)
    {
        using FileStream stream = File.OpenRead(file);
        using var reader = new ArrowFileReader(stream);
        var batches = new List<RecordBatch>();
        int count = reader.RecordBatchCountAsync().AsTask().GetAwaiter().GetResult();
        for (int i = 0; i < count; i++)
        {
            batches.Add(reader.ReadRecordBatchAsync(i, CancellationToken.None).AsTask().GetAwaiter().GetResult());
        }

        return batches;
    }

    [Fact]
    public async Task Stop_PublishesCompleteFilesWithEveryWindow()
    {
        using var dir = new TempDirectory();

        (ArrowFileStore store, MetricsPipeline pipeline) = await RunAsync(dir.Path, windows: 3);
        await pipeline.DisposeAsync();

        string file = Assert.Single(store.PublishedFiles());
        Assert.Empty(Directory.GetFiles(dir.Path, "*" + ArrowFileStore.PartialExtension));
        List<RecordBatch> batches = ReadAll(file);
        List<WindowRow> rows = [.. batches.SelectMany(b => CollectingSink.Read(b, 0))];
        Assert.Equal(30, rows.Count);
        Assert.Equal(30, rows.Sum(r => r.Count));
        WindowRow row = rows.Single(r => r.WindowStartMs == T0 + 20_000 && r.Labels.GetValue("sensor") == "s3");
        Assert.Equal(4.0, row.Last);
        Assert.Equal("1", batches[0].Schema.Metadata["monitoring_stream.schema_version"]);
    }

    [Fact]
    public async Task SmallFileLimit_RotatesIntoSeveralValidFiles()
    {
        using var dir = new TempDirectory();

        (ArrowFileStore store, MetricsPipeline pipeline) = await RunAsync(dir.Path, windows: 6, new ArrowFileStoreOptions { MaxFileBytes = 1 });
        await pipeline.DisposeAsync();

        IReadOnlyList<string> files = store.PublishedFiles();
        Assert.True(files.Count >= 6, $"{files.Count} files");
        Assert.Equal(60, files.SelectMany(ReadAll).Sum(b => b.Length));
    }

    [Fact]
    public async Task Open_PartialFileFromCrash_IsRemovedAndPublishedFilesStay()
    {
        using var dir = new TempDirectory();
        (ArrowFileStore first, MetricsPipeline pipeline) = await RunAsync(dir.Path, windows: 1);
        await pipeline.DisposeAsync();
        string published = Assert.Single(first.PublishedFiles());
        // What a process killed mid-write leaves: a partial file with a header and half a batch.
        byte[] good = await File.ReadAllBytesAsync(published);
        string partial = Path.Combine(dir.Path, "windows-crashed" + ArrowFileStore.PartialExtension);
        await File.WriteAllBytesAsync(partial, good.AsSpan(0, good.Length / 2).ToArray());

        var reopened = new ArrowFileStore(new ArrowFileStoreOptions { Directory = dir.Path });

        Assert.Equal(1, reopened.PartialFilesRemoved);
        Assert.False(File.Exists(partial));
        Assert.Equal([published], reopened.PublishedFiles());
        Assert.Equal(10, ReadAll(published).Sum(b => b.Length));
    }

    [Fact]
    public async Task Retention_TotalSizeLimit_DeletesOldestFiles()
    {
        using var dir = new TempDirectory();

        (ArrowFileStore store, MetricsPipeline pipeline) = await RunAsync(dir.Path, windows: 8, new ArrowFileStoreOptions { MaxFileBytes = 1, MaxTotalBytes = 20_000 });
        await pipeline.DisposeAsync();

        IReadOnlyList<string> files = store.PublishedFiles();
        Assert.True(store.FilesDeleted > 0);
        Assert.True(files.Sum(f => new FileInfo(f).Length) <= 20_000);
        Assert.Equal(store.FilesPublished, files.Count + store.FilesDeleted);
        Assert.True(store.FilesPublished >= 8);
    }

    [Fact]
    public async Task Retention_Age_DeletesFilesOlderThanRetention()
    {
        using var dir = new TempDirectory();
        // Named by the store's clock three days before the run's clock; the hand-copied file has only its mtime.
        string threeDaysEarlier = DateTimeOffset.FromUnixTimeMilliseconds(T0).AddDays(-3).UtcDateTime.ToString("yyyyMMdd'T'HHmmss'.'fff'Z'", System.Globalization.CultureInfo.InvariantCulture);
        string old = Path.Combine(dir.Path, "windows-" + threeDaysEarlier + "-1-000000" + ArrowFileStore.Extension);
        await File.WriteAllBytesAsync(old, [1, 2, 3]);
        string foreign = Path.Combine(dir.Path, "copied-by-hand" + ArrowFileStore.Extension);
        await File.WriteAllBytesAsync(foreign, [1, 2, 3]);
        File.SetLastWriteTimeUtc(foreign, DateTime.UtcNow.AddDays(-3));

        (ArrowFileStore store, MetricsPipeline pipeline) = await RunAsync(dir.Path, windows: 1, new ArrowFileStoreOptions { Retention = TimeSpan.FromDays(1) });
        await pipeline.DisposeAsync();

        Assert.False(File.Exists(old));
        Assert.False(File.Exists(foreign));
        Assert.Single(store.PublishedFiles());
    }
}
