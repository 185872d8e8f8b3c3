//! Success values of the reference's handlers: `{"success":true,"data":...}` and its paginated form.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `{"success":true,"data":T}`, the value of every successful booking-service handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Success_of_{T}")]
pub struct Success<T> {
    /// Always `true`.
    pub success: bool,
    /// The handler's result.
    pub data: T,
}

impl<T> Success<T> {
    /// Wraps a result.
    pub fn new(data: T) -> Self {
        Self {
            success: true,
            data,
        }
    }
}

/// A page of results: `{"success":true,"data":[..],"total","page","limit","totalPages"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Page_of_{T}")]
pub struct Page<T> {
    /// Always `true`.
    pub success: bool,
    /// The items on this page.
    pub data: Vec<T>,
    /// Items matching the query across all pages.
    pub total: i64,
    /// This page's number, from 1.
    pub page: i64,
    /// The page size asked for.
    pub limit: i64,
    /// `ceil(total / limit)`.
    pub total_pages: i64,
}

impl<T> Page<T> {
    /// Builds a page and computes `totalPages` the way the reference does.
    pub fn new(data: Vec<T>, total: i64, page: i64, limit: i64) -> Self {
        let total_pages = if limit > 0 {
            (total + limit - 1) / limit
        } else {
            0
        };
        Self {
            success: true,
            data,
            total,
            page,
            limit,
            total_pages,
        }
    }
}

/// The acknowledgement of a sync message: `{"synced":true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncAck {
    /// Always `true` once the cache row is written.
    pub synced: bool,
}

impl<T: crate::validate::Validate> crate::validate::Validate for Success<T> {
    fn check(&self, c: &mut crate::validate::Checker) {
        c.nested("data", &self.data);
    }
}

impl<T: crate::validate::Validate> crate::validate::Validate for Page<T> {
    fn check(&self, c: &mut crate::validate::Checker) {
        c.nested("data", &self.data);
        c.range("page", self.page, 1, i64::from(i32::MAX));
        c.range(
            "limit",
            self.limit,
            1,
            crate::validate::limits::MAX_PAGE_SIZE,
        );
    }
}

impl crate::validate::Validate for SyncAck {
    fn check(&self, _c: &mut crate::validate::Checker) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_pages_rounds_up() {
        assert_eq!(Page::<u8>::new(vec![], 21, 1, 10).total_pages, 3);
        assert_eq!(Page::<u8>::new(vec![], 20, 1, 10).total_pages, 2);
        assert_eq!(Page::<u8>::new(vec![], 0, 1, 10).total_pages, 0);
    }
}
