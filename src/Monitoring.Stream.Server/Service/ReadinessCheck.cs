using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace Monitoring.Stream.Server.Service;

/// <summary>Ready once the service has started and until it begins to stop (so a load balancer drains it first).</summary>
internal sealed class ReadinessCheck(IHostApplicationLifetime lifetime) : IHealthCheck
{
    private volatile bool _started;

    /// <summary>Marks the service started.</summary>
    public void MarkStarted() => _started = true;

    /// <inheritdoc />
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(!_started ? HealthCheckResult.Unhealthy("The service is starting.")
            : lifetime.ApplicationStopping.IsCancellationRequested ? HealthCheckResult.Unhealthy("The service is stopping.")
            : HealthCheckResult.Healthy("The service is running."));
}
