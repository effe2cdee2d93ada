using System.Globalization;
using Apache.Arrow;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;
using Monitoring.Stream.Tests.Sinks;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Store;

/// <summary>The sink contract over the Arrow file store, read back from the files on disk (published and being written).</summary>
public sealed class ArrowFileStoreContractTests : WindowSinkContractTests, IDisposable
{
    private readonly TempDirectory _root = new();
    private int _stores;

    protected override ValueTask<IWindowSink> CreateSinkAsync()
    {
        string folder = Path.Combine(_root.Path, "store-" + (_stores++).ToString(CultureInfo.InvariantCulture));
        return ValueTask.FromResult<IWindowSink>(new ArrowFileStore(new ArrowFileStoreOptions { Directory = folder }));
    }

    protected override Task<IReadOnlyDictionary<string, long>> ReadCountsAsync(IWindowSink sink, IReadOnlyList<WindowBatch> written)
    {
        var store = (ArrowFileStore)sink;
        return Task.FromResult(CountsOf(ReadFolder(store.Directory)));
    }

    /// <summary>Every whole batch in the folder's published and partial files, as another process would read them.</summary>
    internal static List<RecordBatch> ReadFolder(string folder)
    {
        var batches = new List<RecordBatch>();
        foreach (string file in Directory.GetFiles(folder).Where(f => f.EndsWith(ArrowFileStore.Extension, StringComparison.Ordinal) ||
            f.EndsWith(ArrowFileStore.PartialExtension, StringComparison.Ordinal)))
        {
            batches.AddRange(ArrowFileCheck.CompleteBatches(file).Batches);
        }

        return batches;
    }

    public void Dispose() => _root.Dispose();
}
