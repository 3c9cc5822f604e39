//! The `batchPredictionJobs` calls (provider-apis.md 3.6): create, get, list by display
//! name, cancel. Every call takes an [`Http`] already carrying the bearer token, with the
//! Vertex API base (`https://{location}-aiplatform.googleapis.com/v1`) as its base URL.

use bytes::Bytes;
use http::{Method, StatusCode};

use super::gcs::encode;
use super::wire::{self, Job, JobList};
use crate::providers::{BatchApiError, Http};

/// Pages of 100 jobs read at most when scanning for a display name.
const MAX_SCAN_PAGES: usize = 20;

/// One project and location's jobs.
#[derive(Debug, Clone)]
pub struct Jobs {
    project: String,
    location: String,
}

impl Jobs {
    pub fn new(project: &str, location: &str) -> Jobs {
        Jobs {
            project: project.to_owned(),
            location: location.to_owned(),
        }
    }

    fn collection(&self) -> String {
        format!(
            "/projects/{}/locations/{}/batchPredictionJobs",
            self.project, self.location
        )
    }

    /// The path of a job: its full resource name as Vertex returned it, or a bare id
    /// under this project and location. Anything else is refused rather than spliced
    /// into a URL.
    fn job_path(&self, http: &Http, job: &str) -> Result<String, BatchApiError> {
        let well_formed = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_/".contains(&b))
                && !s.contains("//")
        };
        if job.starts_with("projects/") && job.contains("/batchPredictionJobs/") && well_formed(job)
        {
            Ok(format!("/{job}"))
        } else if !job.contains('/') && well_formed(job) {
            Ok(format!("{}/{job}", self.collection()))
        } else {
            Err(http.decode_error(format!("not a batch prediction job name: {job:?}")))
        }
    }

    pub async fn create(&self, http: &Http, body: Bytes) -> Result<Job, BatchApiError> {
        http.json(Method::POST, &self.collection(), body).await
    }

    pub async fn get(&self, http: &Http, job: &str) -> Result<Job, BatchApiError> {
        let path = self.job_path(http, job)?;
        http.json(Method::GET, &path, Bytes::new()).await
    }

    /// Best-effort cancel (`{}`); the job then moves to CANCELLING / CANCELLED.
    pub async fn cancel(&self, http: &Http, job: &str) -> Result<(), BatchApiError> {
        let path = format!("{}:cancel", self.job_path(http, job)?);
        http.bytes(Method::POST, &path, Bytes::new()).await?;
        Ok(())
    }

    /// Jobs named `display_name`, in list order. Asks the server to filter; a server that
    /// refuses the filter with a 400 (the filter syntax is UNCONFIRMED; the simulator
    /// refuses any filter) is scanned page by page instead. The name is checked here
    /// either way.
    pub async fn find(&self, http: &Http, display_name: &str) -> Result<Vec<Job>, BatchApiError> {
        let filter = format!(
            "filter={}",
            encode(&wire::display_name_filter(display_name))
        );
        match self.scan(http, Some(&filter), display_name).await {
            Err(BatchApiError::Status { status, .. }) if status == StatusCode::BAD_REQUEST => {
                self.scan(http, None, display_name).await
            }
            other => other,
        }
    }

    async fn scan(
        &self,
        http: &Http,
        filter: Option<&str>,
        display_name: &str,
    ) -> Result<Vec<Job>, BatchApiError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_SCAN_PAGES {
            let mut path = format!("{}?pageSize=100", self.collection());
            if let Some(f) = filter {
                path.push('&');
                path.push_str(f);
            }
            if let Some(t) = &token {
                path.push_str(&format!("&pageToken={}", encode(t)));
            }
            let page: JobList = http.json(Method::GET, &path, Bytes::new()).await?;
            found.extend(
                page.batch_prediction_jobs
                    .into_iter()
                    .filter(|j| j.display_name == display_name),
            );
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(found)
    }
}
