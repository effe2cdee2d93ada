using System.Collections.Concurrent;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>One gate per sink call, opened by the test one at a time or all at once.</summary>
internal sealed class Gates
{
    private readonly ConcurrentDictionary<int, TaskCompletionSource> _gates = new();
    private volatile bool _allOpen;

    /// <summary>The gate of call <paramref name="index"/> (from 1).</summary>
    public Task For(int index) => _allOpen ? Task.CompletedTask : Get(index).Task;

    public void Open(int index) => Get(index).TrySetResult();

    /// <summary>Opens every gate, now and later.</summary>
    public void OpenAll()
    {
        _allOpen = true;
        foreach (TaskCompletionSource gate in _gates.Values)
        {
            gate.TrySetResult();
        }
    }

    private TaskCompletionSource Get(int index) =>
        _gates.GetOrAdd(index, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
}
